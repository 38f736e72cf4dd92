/**
 * WhatsApp's handshake protobuf messages, encoded with the small wire codec in protobuf.ts.
 *
 * Field numbers are from whatsmeow `proto/waWa6/WAWebProtobufsWa6.proto` (HandshakeMessage,
 * ClientHello, ServerHello, ClientFinish) and `proto/waCert/WACert.proto` (CertChain), which agree
 * with Baileys `WAProto/WAProto.proto` (checked 2026 against both repositories). Fields this probe
 * never sends or reads (post-quantum extensions, padding) are not modelled: the decoder skips them.
 */
import { decodeMessage, encodeMessage, type ProtoMessage } from './protobuf.js';

// HandshakeMessage (WAWebProtobufsWa6.proto)
const HANDSHAKE_CLIENT_HELLO = 2;
const HANDSHAKE_SERVER_HELLO = 3;
const HANDSHAKE_CLIENT_FINISH = 4;
// HandshakeMessage.ClientHello and .ServerHello share these three numbers
const HELLO_EPHEMERAL = 1;
const HELLO_STATIC = 2;
const HELLO_PAYLOAD = 3;
// HandshakeMessage.ClientFinish
const FINISH_STATIC = 1;
const FINISH_PAYLOAD = 2;
// CertChain (WACert.proto)
const CHAIN_LEAF = 1;
const CHAIN_INTERMEDIATE = 2;
// CertChain.NoiseCertificate
const CERT_DETAILS = 1;
const CERT_SIGNATURE = 2;
// CertChain.NoiseCertificate.Details
const DETAILS_SERIAL = 1; // uint32
const DETAILS_ISSUER_SERIAL = 2; // uint32
const DETAILS_KEY = 3; // bytes
const DETAILS_NOT_BEFORE = 4; // uint64, Unix seconds
const DETAILS_NOT_AFTER = 5; // uint64, Unix seconds

export interface Hello {
  ephemeral?: Uint8Array;
  static?: Uint8Array;
  payload?: Uint8Array;
}
export type ClientHello = Hello;
export type ServerHello = Hello;
export interface ClientFinish {
  static?: Uint8Array;
  payload?: Uint8Array;
}
export interface HandshakeMessage {
  clientHello?: ClientHello;
  serverHello?: ServerHello;
  clientFinish?: ClientFinish;
}

export interface NoiseCertificate {
  /** The serialized Details, exactly as signed. */
  details?: Uint8Array;
  signature?: Uint8Array;
}
export interface CertChain {
  leaf?: NoiseCertificate;
  intermediate?: NoiseCertificate;
}
export interface CertDetails {
  serial?: number;
  issuerSerial?: number;
  key?: Uint8Array;
  /** Unix seconds. */
  notBefore?: number;
  notAfter?: number;
}

function encodeHello(h: Hello): Uint8Array {
  return encodeMessage([
    { field: HELLO_EPHEMERAL, bytes: h.ephemeral },
    { field: HELLO_STATIC, bytes: h.static },
    { field: HELLO_PAYLOAD, bytes: h.payload },
  ]);
}

function decodeHello(m: ProtoMessage, what: string): Hello {
  return dropUndefined({
    ephemeral: m.bytes(HELLO_EPHEMERAL, `${what}.ephemeral`),
    static: m.bytes(HELLO_STATIC, `${what}.static`),
    payload: m.bytes(HELLO_PAYLOAD, `${what}.payload`),
  });
}

export function encodeHandshakeMessage(msg: HandshakeMessage): Uint8Array {
  return encodeMessage([
    { field: HANDSHAKE_CLIENT_HELLO, bytes: msg.clientHello && encodeHello(msg.clientHello) },
    { field: HANDSHAKE_SERVER_HELLO, bytes: msg.serverHello && encodeHello(msg.serverHello) },
    {
      field: HANDSHAKE_CLIENT_FINISH,
      bytes:
        msg.clientFinish &&
        encodeMessage([
          { field: FINISH_STATIC, bytes: msg.clientFinish.static },
          { field: FINISH_PAYLOAD, bytes: msg.clientFinish.payload },
        ]),
    },
  ]);
}

export function decodeHandshakeMessage(bytes: Uint8Array): HandshakeMessage {
  const m = decodeMessage(bytes);
  const sub = (field: number, name: string) => {
    const raw = m.bytes(field, name);
    return raw === undefined ? undefined : decodeMessage(raw);
  };
  const ch = sub(HANDSHAKE_CLIENT_HELLO, 'clientHello');
  const sh = sub(HANDSHAKE_SERVER_HELLO, 'serverHello');
  const cf = sub(HANDSHAKE_CLIENT_FINISH, 'clientFinish');
  return dropUndefined({
    clientHello: ch && decodeHello(ch, 'clientHello'),
    serverHello: sh && decodeHello(sh, 'serverHello'),
    clientFinish:
      cf &&
      dropUndefined({
        static: cf.bytes(FINISH_STATIC, 'clientFinish.static'),
        payload: cf.bytes(FINISH_PAYLOAD, 'clientFinish.payload'),
      }),
  });
}

function encodeCertificate(c: NoiseCertificate): Uint8Array {
  return encodeMessage([
    { field: CERT_DETAILS, bytes: c.details },
    { field: CERT_SIGNATURE, bytes: c.signature },
  ]);
}

function decodeCertificate(bytes: Uint8Array, what: string): NoiseCertificate {
  const m = decodeMessage(bytes);
  return dropUndefined({
    details: m.bytes(CERT_DETAILS, `${what}.details`),
    signature: m.bytes(CERT_SIGNATURE, `${what}.signature`),
  });
}

export function encodeCertChain(chain: CertChain): Uint8Array {
  return encodeMessage([
    { field: CHAIN_LEAF, bytes: chain.leaf && encodeCertificate(chain.leaf) },
    { field: CHAIN_INTERMEDIATE, bytes: chain.intermediate && encodeCertificate(chain.intermediate) },
  ]);
}

export function decodeCertChain(bytes: Uint8Array): CertChain {
  const m = decodeMessage(bytes);
  const leaf = m.bytes(CHAIN_LEAF, 'leaf');
  const intermediate = m.bytes(CHAIN_INTERMEDIATE, 'intermediate');
  return dropUndefined({
    leaf: leaf && decodeCertificate(leaf, 'leaf'),
    intermediate: intermediate && decodeCertificate(intermediate, 'intermediate'),
  });
}

export function encodeCertDetails(d: CertDetails): Uint8Array {
  return encodeMessage([
    { field: DETAILS_SERIAL, varint: d.serial },
    { field: DETAILS_ISSUER_SERIAL, varint: d.issuerSerial },
    { field: DETAILS_KEY, bytes: d.key },
    { field: DETAILS_NOT_BEFORE, varint: d.notBefore },
    { field: DETAILS_NOT_AFTER, varint: d.notAfter },
  ]);
}

export function decodeCertDetails(bytes: Uint8Array): CertDetails {
  const m = decodeMessage(bytes);
  return dropUndefined({
    serial: m.uint32(DETAILS_SERIAL, 'details.serial'),
    issuerSerial: m.uint32(DETAILS_ISSUER_SERIAL, 'details.issuerSerial'),
    key: m.bytes(DETAILS_KEY, 'details.key'),
    notBefore: m.uint64(DETAILS_NOT_BEFORE, 'details.notBefore'),
    notAfter: m.uint64(DETAILS_NOT_AFTER, 'details.notAfter'),
  });
}

/** Absent optional fields stay absent (not `key: undefined`), so results compare and print cleanly. */
function dropUndefined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}
