import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  REPORT_REPLY_LENGTH,
  REPORT_REQUEST_LENGTH,
  decodeReportReply,
  encodeReportReply,
  encodeReportRequest,
  verifyReportRequest,
} from '../../src/protocol/media-report.js';
import { deterministicRng } from '../../src/protocol/media-packet.js';
import { failureCodeOf } from '../helpers/bytes.js';

const KEY = Buffer.alloc(32, 0x42);
const OTHER_KEY = Buffer.alloc(32, 0x43);
const NONCE = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');
const hmac16 = (...parts: Array<string | Buffer>): Buffer => {
  const h = createHmac('sha256', KEY);
  for (const p of parts) h.update(p);
  return h.digest().subarray(0, 16);
};
const xor = (a: Buffer, b: Buffer): Buffer => Buffer.from(a.map((x, i) => x ^ (b[i] as number)));

describe('media report', () => {
  it('the request is the documented construction: nonce, fields under the mask, tag over nonce and fields', () => {
    const req = encodeReportRequest(0x01020304, KEY, NONCE);
    expect(req.bytes.length).toBe(REPORT_REQUEST_LENGTH);
    const fields = Buffer.from('01020304' + '00'.repeat(12), 'hex');
    const tag = hmac16('callprobe media report v1', NONCE, fields);
    const mask = hmac16('callprobe media report v1 mask', tag);
    expect(req.bytes.toString('hex')).toBe(NONCE.toString('hex') + xor(fields, mask).toString('hex') + tag.toString('hex'));
    expect(req.tag.equals(tag)).toBe(true);
  });

  it('the reply is 32 bytes (less than the request: no amplification), sealed over the request tag', () => {
    const req = encodeReportRequest(7, KEY, NONCE);
    const reply = encodeReportReply(req, { packets: 13, bytes: 1733, highestSeq: 12, echoed: 13 }, KEY);
    expect(reply.length).toBe(REPORT_REPLY_LENGTH);
    expect(REPORT_REPLY_LENGTH).toBeLessThan(REPORT_REQUEST_LENGTH);
    const fields = Buffer.from('0000000d' + '000006c5' + '0000000c' + '0000000d', 'hex');
    const tag = hmac16('callprobe media report reply v1', req.tag, fields);
    expect(reply.toString('hex')).toBe(xor(fields, hmac16('callprobe media report reply v1 mask', tag)).toString('hex') + tag.toString('hex'));
  });

  it('round-trips: the reflector reads the flow, the prober the counts; no sequence reads as null', () => {
    const req = encodeReportRequest(0xdeadbeef, KEY);
    const seen = verifyReportRequest(req.bytes, KEY)!;
    expect(seen.flowId).toBe(0xdeadbeef);
    expect(seen.tag.equals(req.tag)).toBe(true);
    const report = { packets: 0, bytes: 0, highestSeq: null, echoed: 0 };
    expect(decodeReportReply(encodeReportReply(seen, report, KEY), req, KEY)).toEqual(report);
    const big = { packets: 2 ** 40, bytes: 5, highestSeq: 999, echoed: 998 };
    expect(decodeReportReply(encodeReportReply(seen, big, KEY), req, KEY)).toEqual({ ...big, packets: 0xffffffff });
  });

  it('refuses what is not ours: another key, reserved bits, a reply to another request, wrong lengths', () => {
    const req = encodeReportRequest(1, KEY);
    expect(verifyReportRequest(req.bytes, OTHER_KEY)).toBeNull();
    expect(verifyReportRequest(req.bytes.subarray(0, 47), KEY)).toBeNull();
    // A request whose reserved bytes are not zero, sealed correctly: a later version's, not ours.
    const fields = Buffer.from('00000001' + '01' + '00'.repeat(11), 'hex');
    const tag = hmac16('callprobe media report v1', NONCE, fields);
    expect(verifyReportRequest(Buffer.concat([NONCE, xor(fields, hmac16('callprobe media report v1 mask', tag)), tag]), KEY)).toBeNull();
    const other = encodeReportRequest(1, KEY);
    const reply = encodeReportReply(req, { packets: 1, bytes: 1, highestSeq: 0, echoed: 1 }, KEY);
    expect(failureCodeOf(() => decodeReportReply(reply, other, KEY))).toBe('proto_mismatch');
    expect(failureCodeOf(() => decodeReportReply(reply, req, OTHER_KEY))).toBe('proto_mismatch');
    expect(failureCodeOf(() => decodeReportReply(reply.subarray(1), req, KEY))).toBe('proto_malformed');
  });

  it('fuzz: random and mutated bytes never verify and never throw anything but the two codes', () => {
    const rng = deterministicRng('report fuzz');
    const req = encodeReportRequest(5, KEY);
    const reply = encodeReportReply(req, { packets: 1, bytes: 1, highestSeq: 0, echoed: 1 }, KEY);
    for (let i = 0; i < 1000; i++) {
      const r = Buffer.from(rng(3));
      const mutated = Buffer.from(i % 2 ? req.bytes : reply);
      const at = (r[0] as number) % mutated.length;
      mutated[at] = (mutated[at] as number) ^ (1 + ((r[1] as number) % 255));
      expect(verifyReportRequest(mutated, KEY)).toBeNull();
      expect(['proto_mismatch', 'proto_malformed']).toContain(failureCodeOf(() => decodeReportReply(mutated, req, KEY)));
      expect(verifyReportRequest(rng((r[2] as number) % 64), KEY)).toBeNull();
    }
  });
});
