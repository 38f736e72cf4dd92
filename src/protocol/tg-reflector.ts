/**
 * Telegram's call reflectors (UDP 596-599): the hello a client sends to learn that a reflector
 * answers, and the reflector's "self info" reply. Pure: bytes in, values out.
 *
 * ## The hello (40 bytes)
 *
 *   tag (16) | FF × 12 | FE FF FF FF | query id (8)
 *
 * - tgcalls (`tgcalls/v2/ReflectorPort.cpp`, `SendReflectorHello`, TelegramMessenger/tgcalls
 *   3484ec7d, 2024): the tag is the first 12 bytes of the call's `peer_tag` then a random non-zero
 *   32-bit "local tag"; the query id is the constant 123, big-endian (00 00 00 00 00 00 00 7B).
 *   Sent every 500 ms until answered. Two hellos captured on the wire (Tolian82/os-zapret2-restyle
 *   docs/verification/evidence/2026-09-20-telegram-voice-current-opnsense-baseline.md) are the
 *   vectors in test/protocol/tg-reflector.test.ts.
 * - libtgvoip (`VoIPController::SendUdpPing`, telegramdesktop/libtgvoip f321e7c8): the whole
 *   16-byte `peer_tag`, then four little-endian int32 -1, -1, -1, -2 (the same 16 bytes), then a
 *   random 64-bit query id.
 * nDPI (`src/lib/protocols/telegram.c`) classifies exactly this: 40 bytes or more to ports
 * 500-600 with a run of twelve FF bytes, so the probe looks like a call to a classifier.
 *
 * ## The self-info reply (64 bytes, little-endian: libtgvoip `tests/MockReflector.cpp`)
 *
 *   tag echo (16) | FF × 12 | C7 72 15 C0 (TLID_UDP_REFLECTOR_SELF_INFO 0xc01572c7) | date (int32)
 *   | query id echo (8) | the client's address as IPv6 (16; IPv4 mapped: 00×10 FF FF a.b.c.d)
 *   | the client's port (uint32)
 *
 * A client takes a reply as the reflector's when it comes from the reflector's address and echoes
 * its tag (tgcalls compares the first 12 bytes, libtgvoip all 16) followed by twelve FF bytes (a
 * "special packet"); what the production reflectors send back to a hello is not published
 * byte for byte, so any special packet echoing our tag counts as an answer, and a self-info one
 * is decoded.
 */
import { randomBytes } from 'node:crypto';
import { malformed, mismatch } from './errors.js';

export const REFLECTOR_HELLO_LENGTH = 40;
export const SELF_INFO_LENGTH = 64;
export const TAG_LENGTH = 16;
/** libtgvoip PrivateDefines.h. */
export const TLID_UDP_REFLECTOR_SELF_INFO = 0xc01572c7;
/** tgcalls sends the constant 123 as the query id (ReflectorPort.cpp `WriteUInt64(123)`). */
const TGCALLS_QUERY_ID = Buffer.from('000000000000007b', 'hex');
/** The special-packet marker: twelve FF bytes after the tag. */
const SPECIAL_MARKER_LENGTH = 12;

export type HelloStyle = 'tgcalls' | 'libtgvoip';

export interface ReflectorHello {
  readonly bytes: Buffer;
  /** The 16 bytes of tag on the wire. */
  readonly tag: Buffer;
  readonly queryId: Buffer;
  readonly style: HelloStyle;
}

export interface HelloOptions {
  style: HelloStyle;
  /** The call's 16-byte peer_tag (random when the probe has none: a reflector was never told of it). */
  peerTag?: Uint8Array;
  /** tgcalls: the 4-byte local tag (random, non-zero). */
  localTag?: Uint8Array;
  /** libtgvoip: the 8-byte query id (random). */
  queryId?: Uint8Array;
}

export function encodeReflectorHello(opts: HelloOptions): ReflectorHello {
  const peerTag = opts.peerTag ?? randomBytes(TAG_LENGTH);
  if (peerTag.length !== TAG_LENGTH) throw new RangeError(`peer tag must be ${TAG_LENGTH} bytes`);
  let tag: Buffer;
  let queryId: Buffer;
  if (opts.style === 'tgcalls') {
    const local = opts.localTag ?? nonZeroRandom(4);
    if (local.length !== 4) throw new RangeError('local tag must be 4 bytes');
    tag = Buffer.concat([peerTag.subarray(0, 12), local]);
    queryId = TGCALLS_QUERY_ID;
  } else {
    tag = Buffer.from(peerTag);
    queryId = Buffer.from(opts.queryId ?? randomBytes(8));
    if (queryId.length !== 8) throw new RangeError('query id must be 8 bytes');
  }
  const bytes = Buffer.concat([tag, Buffer.alloc(SPECIAL_MARKER_LENGTH, 0xff), Buffer.from('feffffff', 'hex'), queryId]);
  return { bytes, tag, queryId, style: opts.style };
}

export type ReflectorReply =
  | {
      kind: 'self-info';
      /** The reflector's clock (Unix seconds). */
      date: number;
      queryIdEchoed: boolean;
      /** Where the reflector saw the datagram come from: the vantage's own public address. */
      address: string;
      port: number;
    }
  | { kind: 'special'; tlid: number }
  | { kind: 'data'; length: number };

/**
 * The reply to `hello`, or a failure: `proto_mismatch` when it does not echo our tag (not an
 * answer to us), `proto_malformed` when it claims to be a self-info but is cut short.
 */
export function decodeReflectorReply(input: Uint8Array, hello: ReflectorHello): ReflectorReply {
  const buf = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const compared = hello.style === 'tgcalls' ? 12 : TAG_LENGTH;
  if (buf.length < TAG_LENGTH || !buf.subarray(0, compared).equals(hello.tag.subarray(0, compared))) {
    throw mismatch('not an answer to our hello: the tag is not ours', { firstBytesHex: buf.subarray(0, 16).toString('hex') });
  }
  const special = buf.length >= 32 && buf.subarray(16, 16 + SPECIAL_MARKER_LENGTH).every((b) => b === 0xff);
  if (!special) return { kind: 'data', length: buf.length };
  const tlid = buf.readUInt32LE(28);
  if (tlid !== TLID_UDP_REFLECTOR_SELF_INFO) return { kind: 'special', tlid };
  if (buf.length < SELF_INFO_LENGTH) throw malformed(`self-info reply is ${buf.length} bytes, shorter than ${SELF_INFO_LENGTH}`, { replyLength: buf.length });
  return {
    kind: 'self-info',
    date: buf.readInt32LE(32),
    queryIdEchoed: buf.subarray(36, 44).equals(hello.queryId),
    address: ipOf(buf.subarray(44, 60)),
    port: buf.readUInt32LE(60),
  };
}

/** IPv4-mapped (::ffff:a.b.c.d, RFC 4291 §2.5.5.2) as dotted IPv4, anything else as IPv6 text. */
function ipOf(b: Buffer): string {
  if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
}

function nonZeroRandom(n: number): Buffer {
  for (;;) {
    const b = randomBytes(n);
    if (b.some((x) => x !== 0)) return b;
  }
}
