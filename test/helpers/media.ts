import { createHmac } from 'node:crypto';
import { verifyMediaRequest } from '../../src/protocol/media-packet.js';

/**
 * Re-seals a v2 request as a prober from before the echo counts made it (labels "callprobe media
 * v1"), written here from the documented construction rather than with the codec's own helpers.
 */
export function asV1Request(v2: Buffer, key: Buffer): Buffer {
  const fields = verifyMediaRequest(v2, key);
  if (!fields || fields.polarity !== 'plain') throw new Error('asV1Request needs a plain v2 request');
  const p = Buffer.from(v2);
  const n = p.length;
  const clear = Buffer.alloc(16);
  clear.writeUInt32BE(fields.flowId, 0);
  clear.writeUInt32BE(fields.seq, 4);
  clear.writeBigUInt64BE(BigInt(fields.sendTimeUs), 8);
  const tag = createHmac('sha256', key).update('callprobe media v1').update(p.subarray(0, n - 32)).update(clear).digest().subarray(0, 16);
  const mask = createHmac('sha256', key).update('callprobe media mask v1').update(tag).digest().subarray(0, 16);
  for (let i = 0; i < 16; i++) p[n - 32 + i] = (clear[i] as number) ^ (mask[i] as number);
  tag.copy(p, n - 16);
  return p;
}
