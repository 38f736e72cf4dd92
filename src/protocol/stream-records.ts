/**
 * The reply to an upload or both-way stream test after its proof (reflector.ts): records from
 * the reflector to the prober, carrying the download's data and the acknowledgements of what
 * arrived of the upload. Pure: bytes in, values out.
 *
 * ## Records
 *
 *   record = kind (u8) | length (u16 BE) | body (length bytes)
 *   kind 1, data: body = bytes of the download; the download's N bytes are the data bodies
 *                 together, at most MAX_DATA_BODY in one record
 *   kind 2, ack:  body (12) = upload bytes received so far (u32 BE) | ack tag (8)
 *                 ack tag = HMAC-SHA256(key, "callprobe stream ack v1" || request tag || count)[0..8]
 *
 * ## Encryption
 *
 * The records after the proof are one AES-256-CTR stream (node:crypto), so that, like everything
 * else callprobe sends, every byte looks random and no header identifies the test:
 *
 *   cipher key = HMAC-SHA256(key, "callprobe stream records v1" || request tag)   (32 bytes)
 *   iv         = 16 zero bytes: the key is new for every request (the request tag is a MAC over
 *                a random nonce), so a counter starting at zero never repeats under one key
 *
 * Data bodies are zeros under the cipher: random on the wire. An ack carries its own tag because
 * CTR alone is malleable: a middlebox that guessed where a count sits could flip its bits.
 *
 * An ack is ACK_RECORD_LENGTH (15) bytes. The reflector never sends more acknowledgement bytes
 * than it received (src/reflector/connection.ts), so an upload test amplifies nothing.
 */
import { createCipheriv, createDecipheriv, createHmac, timingSafeEqual, type Cipher, type Decipher } from 'node:crypto';
import { malformed, mismatch } from './errors.js';

export const RECORD_KINDS = { data: 1, ack: 2 } as const;
export const RECORD_HEADER_LENGTH = 3;
const COUNT_LENGTH = 4;
const ACK_TAG_LENGTH = 8;
export const ACK_BODY_LENGTH = COUNT_LENGTH + ACK_TAG_LENGTH;
export const ACK_RECORD_LENGTH = RECORD_HEADER_LENGTH + ACK_BODY_LENGTH;
/** A data record is at most 16 KiB on the wire, as the reflector's download chunks were. */
export const MAX_DATA_BODY = 16 * 1024 - RECORD_HEADER_LENGTH;

const KEY_LABEL = Buffer.from('callprobe stream records v1');
const ACK_LABEL = Buffer.from('callprobe stream ack v1');
const ZERO_IV = Buffer.alloc(16);

export type StreamRecord = { readonly kind: 'data'; readonly bytes: number } | { readonly kind: 'ack'; readonly received: number };

function cipherKey(key: Uint8Array, requestTag: Uint8Array): Buffer {
  return createHmac('sha256', key).update(KEY_LABEL).update(requestTag).digest();
}

function ackTag(key: Uint8Array, requestTag: Uint8Array, count: Uint8Array): Buffer {
  return createHmac('sha256', key).update(ACK_LABEL).update(requestTag).update(count).digest().subarray(0, ACK_TAG_LENGTH);
}

/** The reflector's side: each record comes out encrypted, to be written in the order made. */
export class RecordWriter {
  private readonly cipher: Cipher;

  constructor(
    private readonly key: Uint8Array,
    private readonly requestTag: Uint8Array,
  ) {
    this.cipher = createCipheriv('aes-256-ctr', cipherKey(key, requestTag), ZERO_IV);
  }

  /** A data record of `length` bytes of the download (1 to MAX_DATA_BODY). */
  data(length: number): Buffer {
    if (!Number.isInteger(length) || length < 1 || length > MAX_DATA_BODY) throw new RangeError(`data record length out of range: ${length}`);
    const plain = Buffer.alloc(RECORD_HEADER_LENGTH + length);
    plain[0] = RECORD_KINDS.data;
    plain.writeUInt16BE(length, 1);
    return this.cipher.update(plain);
  }

  /** An acknowledgement that `received` bytes of the upload have arrived. */
  ack(received: number): Buffer {
    if (!Number.isInteger(received) || received < 0 || received > 0xffffffff) throw new RangeError(`ack count out of range: ${received}`);
    const plain = Buffer.alloc(ACK_RECORD_LENGTH);
    plain[0] = RECORD_KINDS.ack;
    plain.writeUInt16BE(ACK_BODY_LENGTH, 1);
    plain.writeUInt32BE(received, RECORD_HEADER_LENGTH);
    ackTag(this.key, this.requestTag, plain.subarray(RECORD_HEADER_LENGTH, RECORD_HEADER_LENGTH + COUNT_LENGTH)).copy(plain, RECORD_HEADER_LENGTH + COUNT_LENGTH);
    return this.cipher.update(plain);
  }
}

/**
 * The prober's side: decrypts the bytes after the proof, whatever their chunking, and hands out
 * the records they complete. A data record counts as its bytes arrive (a download is measured
 * byte by byte, not record by record); an ack once it is whole and its tag checked. Bytes that are
 * no record raise `proto_malformed`, an ack that is not the reflector's `proto_mismatch`.
 */
export class RecordReader {
  private readonly decipher: Decipher;
  private readonly head = Buffer.alloc(RECORD_HEADER_LENGTH);
  private headFilled = 0;
  /** The record being read: its kind and the body bytes still to come. */
  private kind: 'data' | 'ack' | null = null;
  private left = 0;
  private readonly ackBody = Buffer.alloc(ACK_BODY_LENGTH);

  constructor(
    private readonly key: Uint8Array,
    private readonly requestTag: Uint8Array,
  ) {
    this.decipher = createDecipheriv('aes-256-ctr', cipherKey(key, requestTag), ZERO_IV);
  }

  push(chunk: Uint8Array): StreamRecord[] {
    const plain = this.decipher.update(chunk);
    const out: StreamRecord[] = [];
    let at = 0;
    while (at < plain.length) {
      if (this.kind === null) {
        const n = Math.min(RECORD_HEADER_LENGTH - this.headFilled, plain.length - at);
        plain.copy(this.head, this.headFilled, at, at + n);
        this.headFilled += n;
        at += n;
        if (this.headFilled < RECORD_HEADER_LENGTH) break;
        this.headFilled = 0;
        this.startRecord();
        continue;
      }
      const n = Math.min(this.left, plain.length - at);
      if (this.kind === 'data') {
        out.push({ kind: 'data', bytes: n });
      } else {
        plain.copy(this.ackBody, ACK_BODY_LENGTH - this.left, at, at + n);
      }
      this.left -= n;
      at += n;
      if (this.left === 0) {
        if (this.kind === 'ack') out.push({ kind: 'ack', received: this.checkedAck() });
        this.kind = null;
      }
    }
    return out;
  }

  private startRecord(): void {
    const kind = this.head[0];
    const length = this.head.readUInt16BE(1);
    if (kind === RECORD_KINDS.data && length >= 1 && length <= MAX_DATA_BODY) {
      this.kind = 'data';
    } else if (kind === RECORD_KINDS.ack && length === ACK_BODY_LENGTH) {
      this.kind = 'ack';
    } else {
      throw malformed(`not a stream record: kind ${kind}, length ${length}`, { recordHeaderHex: this.head.toString('hex') });
    }
    this.left = length;
  }

  private checkedAck(): number {
    const count = this.ackBody.subarray(0, COUNT_LENGTH);
    if (!timingSafeEqual(ackTag(this.key, this.requestTag, count), this.ackBody.subarray(COUNT_LENGTH))) {
      throw mismatch('an acknowledgement of the upload is not the reflector’s (its tag does not verify)');
    }
    return count.readUInt32BE(0);
  }
}
