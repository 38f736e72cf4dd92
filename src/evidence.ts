/**
 * The two ways evidence is written down: times as milliseconds with microsecond precision, bytes
 * as lower-case hex of at most 64 bytes (evidence stays bounded).
 */

/** At most this many bytes of anything are copied into evidence as hex. */
export const MAX_EVIDENCE_BYTES = 64;

/** Milliseconds with microsecond precision: what every duration and offset in a record uses. */
export function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** Ratios to 6 decimals: enough for 1 packet in 10^5, short in records. Non-finite values pass through. */
export function round6(value: number): number {
  return Number.isFinite(value) ? Math.round(value * 1e6) / 1e6 : value;
}

/** Lower-case hex of at most `max` bytes. */
export function hexPrefix(bytes: Uint8Array, max = MAX_EVIDENCE_BYTES): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.byteLength, max)).toString('hex');
}
