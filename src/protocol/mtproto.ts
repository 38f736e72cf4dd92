/**
 * MTProto's unencrypted message envelope and the first step of the key exchange:
 * `req_pq_multi` from the client, `resPQ` from the server (core.telegram.org/mtproto/auth_key,
 * core.telegram.org/mtproto/description#unencrypted-message). Pure: bytes in, values out.
 *
 * Envelope: auth_key_id (8 B, zero) | message_id (8 B LE) | message_data_length (4 B LE) | body.
 *
 * How the decoder treats the length field (a decision, documented here and in the tests):
 * the transport frame already delimits the message, so the body is every byte after the 20-byte
 * header, and the TL object is parsed from those bytes.
 * - Bytes after the object are allowed. tdlib pads its own unencrypted messages with random bytes
 *   that the length field counts (td/mtproto/NoCryptoStorer.h), the padded intermediate transport
 *   adds 0-15 bytes inside the frame, and neither tdlib (td/mtproto/HandshakeConnection.h, parse
 *   without fetch_end) nor gramjs (MTProtoPlainSender.js) checks where the object ends.
 * - A declared length larger than the body received is tolerated and reported (`declaredLength`,
 *   `bodyLength`): the official samples-auth_key page shows resPQ dumps whose length field claims
 *   more than the 80-byte body shown (0x70, 0x74, 0x78, 0x84, 0x90 in snapshots from 2023-2024; one
 *   snapshot has a matching 0x50), most likely because the page cuts the server's padding. tdlib
 *   and gramjs ignore the field as well.
 * - A declared length smaller than the object it carries is `proto_malformed`: the message would
 *   end inside its own object, which no server produces.
 */
import { malformed, mismatch, protocolError } from './errors.js';
import { transportErrorCode } from './mtproto-transport.js';
import { TL_CONSTRUCTOR, TlReader, TlWriter } from './tl.js';

/** auth_key_id (8) | message_id (8) | message_data_length (4) (core.telegram.org/mtproto/description#unencrypted-message). */
export const UNENCRYPTED_HEADER_LENGTH = 20;
/** nonce:int128 (core.telegram.org/mtproto/auth_key, "req_pq_multi"). */
export const NONCE_LENGTH = 16;

const TWO_POW_32 = 2 ** 32;

/**
 * A message_id is approximately unixtime * 2^32 (core.telegram.org/mtproto/description#message-identifier-msg-id):
 * whole seconds in the high 32 bits, the fraction of a second in the low 32. The time is a
 * parameter so that the codec stays pure.
 */
function timeToMessageId(unixMs: number): { seconds: bigint; fraction: number } {
  if (!Number.isFinite(unixMs) || unixMs < 0 || unixMs / 1000 >= TWO_POW_32) {
    throw new RangeError(`message_id time out of range: ${unixMs}`);
  }
  const seconds = Math.floor(unixMs / 1000);
  const fraction = Math.min(TWO_POW_32 - 1, Math.floor(((unixMs - seconds * 1000) / 1000) * TWO_POW_32));
  return { seconds: BigInt(seconds), fraction };
}

/** A client message_id: divisible by 4 (core.telegram.org/mtproto/description#message-identifier-msg-id). */
export function clientMessageId(unixMs: number): bigint {
  const { seconds, fraction } = timeToMessageId(unixMs);
  return (seconds << 32n) | BigInt(fraction - (fraction % 4));
}

/** A server message_id answering a client message: 1 modulo 4 (same section). For the lab's fake DC. */
export function serverResponseMessageId(unixMs: number): bigint {
  const { seconds, fraction } = timeToMessageId(unixMs);
  return (seconds << 32n) | BigInt(fraction - (fraction % 4) + 1);
}

/**
 * Throws `proto_error` with the code in evidence (`{ transportError: -404 }`) when the payload is a
 * transport error: a negative int32 LE where a message was expected (mtproto-transports, "Transport errors").
 */
export function throwIfTransportError(payload: Uint8Array): void {
  const code = transportErrorCode(payload);
  if (code !== null) throw protocolError(`MTProto transport error ${code}`, { transportError: code });
}

export interface UnencryptedMessage {
  messageId: bigint;
  /** message_data_length as the sender wrote it. */
  declaredLength: number;
  /** Every byte after the 20-byte header (the object plus any padding). */
  body: Uint8Array;
}

/** Wraps a TL body in the unencrypted envelope. `declaredLength` overrides the length field (lab scenarios, the docs' sample). */
export function encodeUnencryptedMessage(messageId: bigint, body: Uint8Array, declaredLength = body.length): Uint8Array {
  return new TlWriter().int64(0n).int64(messageId).uint32(declaredLength).raw(body).finish();
}

/** Parses the envelope. A transport error is `proto_error`; anything else that is not an unencrypted message is `proto_malformed`. */
export function decodeUnencryptedMessage(bytes: Uint8Array): UnencryptedMessage {
  throwIfTransportError(bytes);
  if (bytes.length < UNENCRYPTED_HEADER_LENGTH) {
    throw malformed(`MTProto: ${bytes.length} bytes, shorter than the ${UNENCRYPTED_HEADER_LENGTH}-byte unencrypted header`, {
      messageLength: bytes.length,
    });
  }
  const reader = new TlReader(bytes);
  const authKeyId = reader.int64('auth_key_id');
  if (authKeyId !== 0n) {
    throw malformed('MTProto: auth_key_id is not 0 where an unencrypted answer was expected', {
      authKeyIdHex: hex64(authKeyId),
    });
  }
  const messageId = reader.int64('message_id');
  if (messageId === 0n) throw malformed('MTProto: message_id is 0', {});
  const declaredLength = reader.uint32('message_data_length');
  return { messageId, declaredLength, body: bytes.subarray(UNENCRYPTED_HEADER_LENGTH) };
}

/** Checks the length field against the bytes the object actually consumed (see the module comment). */
function checkDeclaredLength(message: UnencryptedMessage, objectLength: number, what: string): void {
  if (message.declaredLength < objectLength) {
    throw malformed(`MTProto: message_data_length ${message.declaredLength} is shorter than the ${objectLength}-byte ${what}`, {
      declaredLength: message.declaredLength,
      objectLength,
    });
  }
}

function checkNonce(nonce: Uint8Array): void {
  if (nonce.length !== NONCE_LENGTH) throw new RangeError(`nonce must be ${NONCE_LENGTH} bytes, got ${nonce.length}`);
}

/** The 40-byte unencrypted `req_pq_multi` (core.telegram.org/mtproto/samples-auth_key, "req_pq_multi"). */
export function encodeReqPqMulti(nonce: Uint8Array, messageId: bigint): Uint8Array {
  checkNonce(nonce);
  const body = new TlWriter().uint32(TL_CONSTRUCTOR.reqPqMulti).int128(nonce).finish();
  return encodeUnencryptedMessage(messageId, body);
}

export interface ReqPqMulti {
  messageId: bigint;
  nonce: Uint8Array;
}

/** Server side (the lab's fake DC): reads a client's `req_pq_multi`, with the same length rules as the client. */
export function decodeReqPqMulti(bytes: Uint8Array): ReqPqMulti {
  const message = decodeUnencryptedMessage(bytes);
  const reader = new TlReader(message.body);
  reader.expectConstructor(TL_CONSTRUCTOR.reqPqMulti, 'req_pq_multi');
  const nonce = reader.int128('req_pq_multi.nonce');
  checkDeclaredLength(message, reader.offset, 'req_pq_multi');
  return { messageId: message.messageId, nonce };
}

export interface ResPQ {
  messageId: bigint;
  nonce: Uint8Array;
  serverNonce: Uint8Array;
  /** pq:string, a big-endian natural number (core.telegram.org/mtproto/auth_key). */
  pq: Uint8Array;
  /** server_public_key_fingerprints as TL longs (signed 64-bit). */
  fingerprints: bigint[];
  /** The same fingerprints as 16 hex digits of the unsigned value, as clients write them (0xd09d1d85de64fd85). JSON-safe. */
  fingerprintsHex: string[];
  declaredLength: number;
  bodyLength: number;
  /** Bytes the resPQ object itself took; bodyLength - objectLength is padding. */
  objectLength: number;
}

export interface ResPQFields {
  messageId: bigint;
  nonce: Uint8Array;
  serverNonce: Uint8Array;
  pq: Uint8Array;
  fingerprints: readonly bigint[];
  /** Override of message_data_length (to reproduce the docs' sample or a broken server in the lab). */
  declaredLength?: number;
  /** Bytes appended after the object and counted in the length unless declaredLength says otherwise. */
  padding?: Uint8Array;
}

/** Server side (the lab's fake DC): a well-formed unencrypted `resPQ`. */
export function encodeResPQ(fields: ResPQFields): Uint8Array {
  checkNonce(fields.nonce);
  checkNonce(fields.serverNonce);
  const writer = new TlWriter()
    .uint32(TL_CONSTRUCTOR.resPQ)
    .int128(fields.nonce)
    .int128(fields.serverNonce)
    .bytes(fields.pq)
    .vectorLong(fields.fingerprints);
  if (fields.padding) writer.raw(fields.padding);
  return encodeUnencryptedMessage(fields.messageId, writer.finish(), fields.declaredLength);
}

/**
 * Reads a server's answer to `req_pq_multi`. A transport error is `proto_error` (code in evidence),
 * bytes that are not an unencrypted resPQ are `proto_malformed`, and when `expectedNonce` is given a
 * resPQ carrying another nonce is `proto_mismatch`: it parses, but it is not an answer to us.
 */
export function decodeResPQ(bytes: Uint8Array, expectedNonce?: Uint8Array): ResPQ {
  const message = decodeUnencryptedMessage(bytes);
  const reader = new TlReader(message.body);
  reader.expectConstructor(TL_CONSTRUCTOR.resPQ, 'resPQ');
  const nonce = reader.int128('resPQ.nonce');
  const serverNonce = reader.int128('resPQ.server_nonce');
  const pq = reader.bytes('resPQ.pq');
  const fingerprints = reader.vectorLong('resPQ.server_public_key_fingerprints');
  const objectLength = reader.offset;
  checkDeclaredLength(message, objectLength, 'resPQ');
  if (expectedNonce !== undefined && !Buffer.from(nonce).equals(Buffer.from(expectedNonce))) {
    throw mismatch('resPQ nonce is not the one we sent', {
      expectedNonceHex: Buffer.from(expectedNonce).toString('hex'),
      receivedNonceHex: Buffer.from(nonce).toString('hex'),
    });
  }
  return {
    messageId: message.messageId,
    nonce,
    serverNonce,
    pq,
    fingerprints,
    fingerprintsHex: fingerprints.map(fingerprintHex),
    declaredLength: message.declaredLength,
    bodyLength: message.body.length,
    objectLength,
  };
}

/** A key fingerprint as 16 hex digits of its unsigned 64-bit value (d09d1d85de64fd85). */
export function fingerprintHex(fingerprint: bigint): string {
  return hex64(fingerprint);
}

function hex64(value: bigint): string {
  return BigInt.asUintN(64, value).toString(16).padStart(16, '0');
}

