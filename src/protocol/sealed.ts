/**
 * The sealed 16-byte fields callprobe's own messages carry (the stream request, the media report
 * and its reply): a synthetic-IV construction in which every byte on the wire looks random, so
 * no constant marks callprobe, and only holders of the key can make or read one.
 *
 *   tag  = HMAC-SHA256(key, label || context || fields)[0..16]
 *   mask = HMAC-SHA256(key, mask label || tag)[0..16]
 *   wire = fields XOR mask | tag
 *
 * `context` is what the tag covers besides the fields: a request's nonce, or the request tag a
 * reply answers (so an old reply cannot answer a new question). HMAC-SHA256 truncated to 128 bits
 * is half the hash output, the lower bound RFC 2104 §5 recommends.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SEALED_FIELDS_LENGTH = 16;
export const SEALED_TAG_LENGTH = 16;
export const SEALED_LENGTH = SEALED_FIELDS_LENGTH + SEALED_TAG_LENGTH;

export interface SealLabels {
  readonly tag: Buffer;
  readonly mask: Buffer;
}

export function sealLabels(name: string): SealLabels {
  return { tag: Buffer.from(`callprobe ${name}`), mask: Buffer.from(`callprobe ${name} mask`) };
}

export function hmac16(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return h.digest().subarray(0, SEALED_TAG_LENGTH);
}

function xor16(a: Uint8Array, mask: Uint8Array): Buffer {
  const out = Buffer.alloc(SEALED_FIELDS_LENGTH);
  for (let i = 0; i < SEALED_FIELDS_LENGTH; i++) out[i] = (a[i] as number) ^ (mask[i] as number);
  return out;
}

/** The 32 bytes on the wire for these fields, and their tag. */
export function seal(key: Uint8Array, labels: SealLabels, context: Uint8Array, fields: Uint8Array): { wire: Buffer; tag: Buffer } {
  if (fields.length !== SEALED_FIELDS_LENGTH) throw new RangeError(`sealed fields must be ${SEALED_FIELDS_LENGTH} bytes`);
  const tag = hmac16(key, labels.tag, context, fields);
  return { wire: Buffer.concat([xor16(fields, hmac16(key, labels.mask, tag)), tag]), tag };
}

/** The clear fields of 32 sealed bytes and their tag, or null when they were not sealed so under `key`. Never throws on wire input. */
export function unseal(key: Uint8Array, labels: SealLabels, context: Uint8Array, wire: Uint8Array): { fields: Buffer; tag: Buffer } | null {
  if (wire.length !== SEALED_LENGTH) return null;
  const tag = Buffer.from(wire.subarray(SEALED_FIELDS_LENGTH));
  const fields = xor16(wire.subarray(0, SEALED_FIELDS_LENGTH), hmac16(key, labels.mask, tag));
  return timingSafeEqual(hmac16(key, labels.tag, context, fields), tag) ? { fields, tag } : null;
}

/** A count as a u32 field: whole, at least 0, at most 2^32 - 1. */
export function saturateUint32(n: number): number {
  return Math.min(0xffffffff, Math.max(0, Math.floor(n)));
}
