/**
 * Byte and failure helpers shared by the codec tests (test/protocol, test/media): hex in and out,
 * deterministic pseudo-random bytes for fuzz loops (so a failing case can be replayed from its
 * seed), and catching the ProbeFailure a decoder throws.
 *
 * The three pseudo-random sources are distinct streams and are not interchangeable: a test's
 * inputs are defined by the one it uses, so switching a test to another changes what it checks.
 */
import { createHash } from 'node:crypto';
import { expect } from 'vitest';
import { ProbeFailure } from '../../src/failure.js';

// ---------------------------------------------------------------------------------------------
// Hex.

/**
 * Parses hex, ignoring whitespace (test vectors are written in spaced groups and across lines).
 * Throws on anything else that is not a hex digit and on an odd digit count, where
 * Buffer.from(s, 'hex') would silently stop early and shorten a mistyped vector.
 */
export function fromHex(text: string): Buffer<ArrayBuffer> {
  const digits = text.replace(/\s/g, '');
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(digits)) throw new Error(`fromHex: not an even run of hex digits: ${JSON.stringify(text)}`);
  return Buffer.from(digits, 'hex');
}

/** fromHex as a plain Uint8Array (not a Buffer), for tests whose values must be plain arrays. */
export function fromHexUint8(text: string): Uint8Array {
  return Uint8Array.from(fromHex(text));
}

/** Lowercase hex, no separators. */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

// ---------------------------------------------------------------------------------------------
// Deterministic pseudo-random bytes.

/**
 * A stream of SHA-256 counter-mode bytes: blocks SHA-256("<seed>:0"), SHA-256("<seed>:1"), ...
 * concatenated; each call takes the next `n` bytes of the stream. A new Buffer every call.
 */
export function seededBytes(seed: string): (n: number) => Buffer {
  let counter = 0;
  let pool = Buffer.alloc(0);
  return (n) => {
    while (pool.length < n) pool = Buffer.concat([pool, createHash('sha256').update(`${seed}:${counter++}`).digest()]);
    const out = Buffer.from(pool.subarray(0, n));
    pool = pool.subarray(n);
    return out;
  };
}

/**
 * The first `n` bytes of SHA-256("<seed>/0") || SHA-256("<seed>/1") || ... (note "/", not the
 * ":" of seededBytes: a different stream). The same seed always gives the same bytes.
 */
export function fuzzBytes(seed: string, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i * 32 < n; i++) out.set(createHash('sha256').update(`${seed}/${i}`).digest().subarray(0, Math.min(32, n - i * 32)), i * 32);
  return out;
}

/** mulberry32: a small seeded PRNG giving numbers in [0, 1), for fuzz loops that draw more than bytes. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` bytes drawn from `rand` (e.g. mulberry32), one draw per byte: floor(rand() · 256). */
export function randomBytesFrom(rand: () => number, n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(rand() * 256);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Failures.

/** Runs `fn` and returns the ProbeFailure it throws; fails the test if it throws anything else or returns. */
export function failureOf(fn: () => unknown): ProbeFailure {
  try {
    fn();
  } catch (err) {
    if (err instanceof ProbeFailure) return err;
    throw new Error(`expected a ProbeFailure, got ${String(err)}`, { cause: err });
  }
  throw new Error('expected a ProbeFailure, got none');
}

/** Runs `fn`, expects it to throw a ProbeFailure with code proto_malformed, and returns it. */
export function expectMalformed(fn: () => unknown): ProbeFailure {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ProbeFailure);
    expect((err as ProbeFailure).code).toBe('proto_malformed');
    return err as ProbeFailure;
  }
  throw new Error('expected proto_malformed, nothing was thrown');
}

/** The code of the ProbeFailure `fn` throws, or 'none' if it returns; anything else thrown is rethrown. */
export function failureCodeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof ProbeFailure) return err.code;
    throw err;
  }
  return 'none';
}
