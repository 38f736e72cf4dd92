import { describe, expect, it } from 'vitest';
import { encodeStreamRequest } from '../../src/protocol/reflector.js';
import { ACK_RECORD_LENGTH, MAX_DATA_BODY, RecordReader, RecordWriter, type StreamRecord } from '../../src/protocol/stream-records.js';
import { ProbeFailure } from '../../src/failure.js';

const KEY = Buffer.alloc(32, 0x5a);
const NONCE = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');
/** The upload request of test/protocol/reflector.test.ts's vectors: the records are keyed by its tag. */
const TAG = encodeStreamRequest(16384, KEY, { nonce: NONCE, direction: 'upload' }).tag;

/**
 * ack(1024), data(5), ack(16384) as one record stream, computed independently of src/ (Python's
 * hmac and hashlib, AES-256-CTR from the `cryptography` package), plaintext and on the wire.
 */
const PLAIN = '02000c00000400b56d1846965086a1010005000000000002000c00004000e6f2a9949366429c';
const WIRE = '36ba195c9685b4062ae92ccee99fb5ad02e5b62dddbf10282f2c92e0d694f9eaa34a706be05f';

const dataBytes = (records: StreamRecord[]) => records.reduce((n, r) => n + (r.kind === 'data' ? r.bytes : 0), 0);
const acks = (records: StreamRecord[]) => records.flatMap((r) => (r.kind === 'ack' ? [r.received] : []));

describe('stream records (the reply to an upload or both-way test)', () => {
  it('writes the fixed vector', () => {
    const w = new RecordWriter(KEY, TAG);
    const wire = Buffer.concat([w.ack(1024), w.data(5), w.ack(16384)]);
    expect(wire.toString('hex')).toBe(WIRE);
    expect(PLAIN.length / 2).toBe(wire.length);
    expect(w.ack(0).length).toBe(ACK_RECORD_LENGTH);
  });

  it('reads the fixed vector whatever the chunking: acks whole, data as its bytes arrive', () => {
    const wire = Buffer.from(WIRE, 'hex');
    for (let cut = 0; cut <= wire.length; cut++) {
      const r = new RecordReader(KEY, TAG);
      const records = [...r.push(wire.subarray(0, cut)), ...r.push(wire.subarray(cut))];
      expect({ acks: acks(records), data: dataBytes(records) }).toEqual({ acks: [1024, 16384], data: 5 });
    }
    const byByte = new RecordReader(KEY, TAG);
    const records = [...wire].flatMap((b) => byByte.push(Uint8Array.of(b)));
    expect(records.filter((x) => x.kind === 'data')).toHaveLength(5);
    expect(acks(records)).toEqual([1024, 16384]);
  });

  it('looks random on the wire: the same records under another request are other bytes', () => {
    const other = encodeStreamRequest(16384, KEY, { direction: 'upload' }).tag;
    const a = new RecordWriter(KEY, TAG).ack(1024);
    const b = new RecordWriter(KEY, other).ack(1024);
    expect(a.equals(b)).toBe(false);
    // Data records are zeros under the cipher: nothing of the plaintext shows.
    const data = new RecordWriter(KEY, TAG).data(MAX_DATA_BODY);
    expect(data.length).toBe(16 * 1024);
    expect(data.subarray(3).filter((x) => x === 0).length).toBeLessThan(128);
  });

  it('an ack with a flipped bit in its count or tag is not the reflector’s: proto_mismatch', () => {
    const ack = new RecordWriter(KEY, TAG).ack(1024);
    for (const byte of [3, 6, 7, 14]) {
      const flipped = Buffer.from(ack);
      flipped[byte]! ^= 0x01;
      expect(() => new RecordReader(KEY, TAG).push(flipped)).toThrow(expect.objectContaining({ code: 'proto_mismatch' }));
    }
  });

  it('records under another request’s or key’s cipher decrypt to no record: proto_malformed', () => {
    const otherTag = encodeStreamRequest(16384, KEY, { nonce: Buffer.alloc(16, 7), direction: 'upload' }).tag;
    for (const w of [new RecordWriter(KEY, otherTag), new RecordWriter(Buffer.alloc(32, 1), TAG)]) {
      expect(() => new RecordReader(KEY, TAG).push(w.ack(1024))).toThrow(expect.objectContaining({ code: 'proto_malformed' }));
    }
  });

  it('bytes that are no record (kind, or an impossible length) are proto_malformed, never a crash', () => {
    const w = new RecordWriter(KEY, TAG);
    const good = w.ack(5);
    for (const [byte, bit] of [
      [0, 0x04],
      [1, 0x80],
      [2, 0x01],
    ] as const) {
      const bad = Buffer.from(good);
      bad[byte]! ^= bit;
      let err: unknown;
      try {
        new RecordReader(KEY, TAG).push(bad);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ProbeFailure);
      expect((err as ProbeFailure).code).toBe('proto_malformed');
    }
    expect(() => w.data(0)).toThrow(RangeError);
    expect(() => w.data(MAX_DATA_BODY + 1)).toThrow(RangeError);
  });
});
