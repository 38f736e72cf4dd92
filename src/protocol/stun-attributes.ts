/**
 * STUN and TURN attribute values (RFC 8489 §14, RFC 8656 §18, RFC 5780 §7, RFC 3489 §11.2):
 * a constructor per attribute for building (`xorPeerAddress(addr)`, `username('u')`...) and a
 * getter per attribute for reading (`getXorMappedAddress(msg)`...). Getters return undefined
 * when the attribute is absent and raise `proto_malformed` when it is present but undecodable.
 *
 * MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT are computed by `buildMessage` and checked by
 * `verifyIntegrity`/`verifyFingerprint` in stun.ts: their value depends on where they sit.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { malformed } from './errors.js';
import type { EncodeContext, RawAttr, StunAttribute, StunMessage } from './stun.js';

/** Attribute types. RFC 8489 §18.3 (IANA "STUN Attributes"), RFC 8656 §18, RFC 5780 §7, RFC 3489 §11.2. */
export const ATTR = {
  MAPPED_ADDRESS: 0x0001, // RFC 8489 §14.1
  RESPONSE_ADDRESS: 0x0002, // RFC 3489 §11.2.2 (classic only)
  CHANGE_REQUEST: 0x0003, // RFC 5780 §7.2 (RFC 3489 §11.2.4)
  SOURCE_ADDRESS: 0x0004, // RFC 3489 §11.2.5 (classic only; RESPONSE-ORIGIN replaced it)
  CHANGED_ADDRESS: 0x0005, // RFC 3489 §11.2.3 (classic only; OTHER-ADDRESS replaced it)
  USERNAME: 0x0006, // RFC 8489 §14.3
  PASSWORD: 0x0007, // RFC 3489 §11.2.7 (classic only)
  MESSAGE_INTEGRITY: 0x0008, // RFC 8489 §14.5
  ERROR_CODE: 0x0009, // RFC 8489 §14.8
  UNKNOWN_ATTRIBUTES: 0x000a, // RFC 8489 §14.13
  REFLECTED_FROM: 0x000b, // RFC 3489 §11.2.11 (classic only)
  CHANNEL_NUMBER: 0x000c, // RFC 8656 §18.1
  LIFETIME: 0x000d, // RFC 8656 §18.2
  XOR_PEER_ADDRESS: 0x0012, // RFC 8656 §18.3
  DATA: 0x0013, // RFC 8656 §18.4
  REALM: 0x0014, // RFC 8489 §14.9
  NONCE: 0x0015, // RFC 8489 §14.10
  XOR_RELAYED_ADDRESS: 0x0016, // RFC 8656 §18.5
  REQUESTED_ADDRESS_FAMILY: 0x0017, // RFC 8656 §18.6
  EVEN_PORT: 0x0018, // RFC 8656 §18.7
  REQUESTED_TRANSPORT: 0x0019, // RFC 8656 §18.8
  DONT_FRAGMENT: 0x001a, // RFC 8656 §18.9
  MESSAGE_INTEGRITY_SHA256: 0x001c, // RFC 8489 §14.6
  PASSWORD_ALGORITHM: 0x001d, // RFC 8489 §14.12
  USERHASH: 0x001e, // RFC 8489 §14.4
  XOR_MAPPED_ADDRESS: 0x0020, // RFC 8489 §14.2
  RESERVATION_TOKEN: 0x0022, // RFC 8656 §18.10
  ADDITIONAL_ADDRESS_FAMILY: 0x8000, // RFC 8656 §18.11
  ADDRESS_ERROR_CODE: 0x8001, // RFC 8656 §18.12
  PASSWORD_ALGORITHMS: 0x8002, // RFC 8489 §14.11
  ALTERNATE_DOMAIN: 0x8003, // RFC 8489 §14.16
  ICMP: 0x8004, // RFC 8656 §18.13
  SOFTWARE: 0x8022, // RFC 8489 §14.14
  ALTERNATE_SERVER: 0x8023, // RFC 8489 §14.15
  FINGERPRINT: 0x8028, // RFC 8489 §14.7
  RESPONSE_ORIGIN: 0x802b, // RFC 5780 §7.3
  OTHER_ADDRESS: 0x802c, // RFC 5780 §7.4
} as const;

const ATTR_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(ATTR).map(([name, type]) => [type, name.replaceAll('_', '-')]));
/** The RFC's name of an attribute type, for evidence ("XOR-MAPPED-ADDRESS", or "0x802f"). */
export function attributeName(type: number): string {
  return ATTR_NAMES.get(type) ?? `0x${type.toString(16).padStart(4, '0')}`;
}

// ---------------------------------------------------------------------------------------------
// Addresses: MAPPED-ADDRESS and friends (RFC 8489 §14.1), and their XOR'ed forms (§14.2).

export interface TransportAddress {
  readonly family: 'IPv4' | 'IPv6';
  readonly address: string;
  readonly port: number;
}

/** RFC 8489 §14.1: the family byte. */
const FAMILY_IPV4 = 0x01;
const FAMILY_IPV6 = 0x02;

function addressBytes(addr: TransportAddress): Buffer {
  if (!Number.isInteger(addr.port) || addr.port < 0 || addr.port > 0xffff) throw new RangeError(`port out of range: ${addr.port}`);
  if (addr.family === 'IPv4') {
    if (!isIPv4(addr.address)) throw new RangeError(`not an IPv4 address: ${addr.address}`);
    return Buffer.from(addr.address.split('.').map(Number));
  }
  return ipv6Bytes(addr.address);
}

/** Expand an IPv6 text address (with `::` and an optional dotted-quad tail) to 16 bytes. */
function ipv6Bytes(text: string): Buffer {
  if (!isIPv6(text) || text.includes('%')) throw new RangeError(`not an IPv6 address: ${text}`);
  // A dotted-quad tail (::ffff:1.2.3.4) is the last two 16-bit groups written in decimal.
  const s = text.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_m, a: string, b: string, c: string, d: string) =>
    `${((Number(a) << 8) | Number(b)).toString(16)}:${((Number(c) << 8) | Number(d)).toString(16)}`,
  );
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((h) => parseInt(h, 16)));
  const [head = '', rest] = s.split('::');
  const left = parse(head);
  const right = rest === undefined ? [] : parse(rest);
  const groups = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

/** Canonical RFC 5952 text for 16 bytes: WHATWG URL serialises IPv6 hosts exactly that way. */
function ipv6Text(bytes: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

function encodeAddress(addr: TransportAddress, xorKey?: Buffer): Buffer {
  const ip = addressBytes(addr);
  const out = Buffer.alloc(4 + ip.length);
  out[1] = addr.family === 'IPv4' ? FAMILY_IPV4 : FAMILY_IPV6;
  out.writeUInt16BE(addr.port, 2);
  ip.copy(out, 4);
  if (xorKey) xorInPlace(out, xorKey);
  return out;
}

/**
 * RFC 8489 §14.2: the port is XOR'ed with the cookie's top 16 bits, an IPv4 address with the
 * cookie, an IPv6 address with cookie || transaction id; `xorKey` is header bytes 4..20, which
 * is exactly that (and RFC 3489's 128-bit id in a classic message).
 */
function xorInPlace(value: Buffer, xorKey: Buffer): void {
  value[2] = (value[2] as number) ^ (xorKey[0] as number);
  value[3] = (value[3] as number) ^ (xorKey[1] as number);
  for (let i = 4; i < value.length; i++) value[i] = (value[i] as number) ^ (xorKey[i - 4] as number);
}

function decodeAddress(attr: RawAttr, xorKey?: Buffer): TransportAddress {
  const v = attr.value;
  const name = attributeName(attr.type);
  if (v.length < 4) throw malformed(`${name} is ${v.length} bytes, too short for an address`);
  const family = v[1];
  const expected = family === FAMILY_IPV4 ? 8 : family === FAMILY_IPV6 ? 20 : -1;
  if (expected < 0) throw malformed(`${name} has unknown address family 0x${(family ?? 0).toString(16)}`);
  if (v.length !== expected) throw malformed(`${name} is ${v.length} bytes, an ${family === FAMILY_IPV4 ? 'IPv4' : 'IPv6'} address needs ${expected}`);
  const plain = Buffer.from(v);
  if (xorKey) xorInPlace(plain, xorKey);
  const port = plain.readUInt16BE(2);
  if (family === FAMILY_IPV4) return { family: 'IPv4', address: Array.from(plain.subarray(4, 8)).join('.'), port };
  return { family: 'IPv6', address: ipv6Text(plain.subarray(4, 20)), port };
}

const headerXorKey = (msg: StunMessage): Buffer => msg.raw.subarray(4, 20);

function plainAddressAttribute(type: number) {
  return (addr: TransportAddress): StunAttribute => ({ type, value: encodeAddress(addr) });
}
function xorAddressAttribute(type: number) {
  return (addr: TransportAddress): StunAttribute => ({ type, value: (ctx: EncodeContext) => encodeAddress(addr, ctx.xorKey) });
}
function plainAddressGetter(type: number) {
  return (msg: StunMessage): TransportAddress | undefined => {
    const a = first(msg, type);
    return a && decodeAddress(a);
  };
}
function xorAddressGetter(type: number) {
  return (msg: StunMessage): TransportAddress | undefined => {
    const a = first(msg, type);
    return a && decodeAddress(a, headerXorKey(msg));
  };
}

export const mappedAddress = plainAddressAttribute(ATTR.MAPPED_ADDRESS);
export const xorMappedAddress = xorAddressAttribute(ATTR.XOR_MAPPED_ADDRESS);
export const xorPeerAddress = xorAddressAttribute(ATTR.XOR_PEER_ADDRESS);
export const xorRelayedAddress = xorAddressAttribute(ATTR.XOR_RELAYED_ADDRESS);
export const alternateServer = plainAddressAttribute(ATTR.ALTERNATE_SERVER);

export const getMappedAddress = plainAddressGetter(ATTR.MAPPED_ADDRESS);
export const getXorMappedAddress = xorAddressGetter(ATTR.XOR_MAPPED_ADDRESS);
export const getXorPeerAddress = xorAddressGetter(ATTR.XOR_PEER_ADDRESS);
export const getXorRelayedAddress = xorAddressGetter(ATTR.XOR_RELAYED_ADDRESS);
export const getAlternateServer = plainAddressGetter(ATTR.ALTERNATE_SERVER);
export const getResponseOrigin = plainAddressGetter(ATTR.RESPONSE_ORIGIN);
export const getOtherAddress = plainAddressGetter(ATTR.OTHER_ADDRESS);
/** RFC 3489 §11.2.5/§11.2.3: what a classic server (node-stun) sends besides MAPPED-ADDRESS. */
export const getSourceAddress = plainAddressGetter(ATTR.SOURCE_ADDRESS);
export const getChangedAddress = plainAddressGetter(ATTR.CHANGED_ADDRESS);

/** Every XOR-PEER-ADDRESS (a CreatePermission may carry several, RFC 8656 §10.1). */
export function getXorPeerAddresses(msg: StunMessage): TransportAddress[] {
  return msg.attributes.filter((a) => a.type === ATTR.XOR_PEER_ADDRESS).map((a) => decodeAddress(a, headerXorKey(msg)));
}

/**
 * The reflexive address a Binding response reports: XOR-MAPPED-ADDRESS when present (RFC 8489
 * §14.2), else MAPPED-ADDRESS (RFC 3489 servers, and RFC 8489 §14.1 backwards compatibility).
 */
export function getReflexiveAddress(msg: StunMessage): (TransportAddress & { attribute: 'XOR-MAPPED-ADDRESS' | 'MAPPED-ADDRESS' }) | undefined {
  const xor = getXorMappedAddress(msg);
  if (xor) return { ...xor, attribute: 'XOR-MAPPED-ADDRESS' };
  const plain = getMappedAddress(msg);
  return plain && { ...plain, attribute: 'MAPPED-ADDRESS' };
}

// ---------------------------------------------------------------------------------------------
// Text attributes. Limits are in bytes of UTF-8 (RFC 8489 §14.3, §14.9, §14.10, §14.14).

/** RFC 8489 §14.3: USERNAME is less than 509 bytes. */
const USERNAME_MAX = 508;
/** RFC 8489 §14.9, §14.10, §14.14, §14.16: fewer than 128 characters, at most 763 bytes. */
const TEXT_MAX = 763;

const utf8 = new TextDecoder('utf-8', { fatal: false });

function textAttribute(type: number, max: number) {
  return (value: string | Uint8Array): StunAttribute => {
    const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    if (bytes.length > max) throw new RangeError(`${attributeName(type)} longer than ${max} bytes: ${bytes.length}`);
    return { type, value: bytes };
  };
}
function textGetter(type: number) {
  return (msg: StunMessage): string | undefined => {
    const a = first(msg, type);
    return a && utf8.decode(a.value);
  };
}

/** Accepts the raw bytes too, so REALM and NONCE can be echoed byte for byte. */
export const username = textAttribute(ATTR.USERNAME, USERNAME_MAX);
export const realm = textAttribute(ATTR.REALM, TEXT_MAX);
export const nonce = textAttribute(ATTR.NONCE, TEXT_MAX);
export const software = textAttribute(ATTR.SOFTWARE, TEXT_MAX);
export const alternateDomain = textAttribute(ATTR.ALTERNATE_DOMAIN, TEXT_MAX);

export const getUsername = textGetter(ATTR.USERNAME);
export const getRealm = textGetter(ATTR.REALM);
export const getNonce = textGetter(ATTR.NONCE);
export const getSoftware = textGetter(ATTR.SOFTWARE);
export const getAlternateDomain = textGetter(ATTR.ALTERNATE_DOMAIN);

// ---------------------------------------------------------------------------------------------
// ERROR-CODE (RFC 8489 §14.8) and UNKNOWN-ATTRIBUTES (§14.13).

export interface ErrorCode {
  readonly code: number;
  readonly reason: string;
}

/** RFC 8489 §14.8 and RFC 8656 §19: the codes a client reacts to. */
export const ERROR = {
  TRY_ALTERNATE: 300, // RFC 8489 §14.8
  BAD_REQUEST: 400, // RFC 8489 §14.8
  UNAUTHENTICATED: 401, // RFC 8489 §14.8
  FORBIDDEN: 403, // RFC 8656 §19
  UNKNOWN_ATTRIBUTE: 420, // RFC 8489 §14.8
  ALLOCATION_MISMATCH: 437, // RFC 8656 §19
  STALE_NONCE: 438, // RFC 8489 §14.8
  ADDRESS_FAMILY_NOT_SUPPORTED: 440, // RFC 8656 §19
  WRONG_CREDENTIALS: 441, // RFC 8656 §19
  UNSUPPORTED_TRANSPORT_PROTOCOL: 442, // RFC 8656 §19
  PEER_ADDRESS_FAMILY_MISMATCH: 443, // RFC 8656 §19
  ALLOCATION_QUOTA_REACHED: 486, // RFC 8656 §19
  SERVER_ERROR: 500, // RFC 8489 §14.8
  INSUFFICIENT_CAPACITY: 508, // RFC 8656 §19
} as const;

/** RFC 8489 §14.8: class is the hundreds digit (3-6), number the rest (0-99). */
export function errorCode(code: number, reason = ''): StunAttribute {
  if (!Number.isInteger(code) || code < 300 || code > 699) throw new RangeError(`STUN error code out of range: ${code}`);
  const text = Buffer.from(reason, 'utf8');
  if (text.length > TEXT_MAX) throw new RangeError(`ERROR-CODE reason longer than ${TEXT_MAX} bytes`);
  const value = Buffer.alloc(4 + text.length);
  value[2] = Math.floor(code / 100);
  value[3] = code % 100;
  text.copy(value, 4);
  return { type: ATTR.ERROR_CODE, value };
}

export function getErrorCode(msg: StunMessage): ErrorCode | undefined {
  const a = first(msg, ATTR.ERROR_CODE);
  if (!a) return undefined;
  if (a.value.length < 4) throw malformed(`ERROR-CODE is ${a.value.length} bytes, needs at least 4 (RFC 8489 §14.8)`);
  const cls = (a.value[2] as number) & 0x07;
  const number = a.value[3] as number;
  if (cls < 3 || cls > 6 || number > 99) {
    throw malformed(`ERROR-CODE class ${cls} number ${number} is outside 300-699 (RFC 8489 §14.8)`, { errorCodeHex: a.value.subarray(0, 4).toString('hex') });
  }
  return { code: cls * 100 + number, reason: utf8.decode(a.value.subarray(4)) };
}

export function unknownAttributes(types: readonly number[]): StunAttribute {
  const value = Buffer.alloc(types.length * 2);
  types.forEach((t, i) => value.writeUInt16BE(t, i * 2));
  return { type: ATTR.UNKNOWN_ATTRIBUTES, value };
}

export function getUnknownAttributes(msg: StunMessage): number[] | undefined {
  const a = first(msg, ATTR.UNKNOWN_ATTRIBUTES);
  if (!a) return undefined;
  if (a.value.length % 2 !== 0) throw malformed(`UNKNOWN-ATTRIBUTES is ${a.value.length} bytes, not a list of 16-bit types`);
  const out: number[] = [];
  for (let i = 0; i < a.value.length; i += 2) out.push(a.value.readUInt16BE(i));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Long-term credential mechanism extras (RFC 8489 §9.2): USERHASH, PASSWORD-ALGORITHM(S).

/** RFC 8489 §18.5 (STUN Password Algorithms registry). */
export const PASSWORD_ALGORITHM = { MD5: 0x0001, SHA256: 0x0002 } as const;

export interface PasswordAlgorithm {
  readonly algorithm: number;
  readonly parameters: Buffer;
}

/** RFC 8489 §14.4: SHA-256 of "username:realm", 32 bytes; see `userhashOf` in turn.ts. */
export function userhash(hash: Uint8Array): StunAttribute {
  if (hash.length !== 32) throw new RangeError(`USERHASH must be 32 bytes, got ${hash.length}`);
  return { type: ATTR.USERHASH, value: hash };
}

export function getUserhash(msg: StunMessage): Buffer | undefined {
  const a = first(msg, ATTR.USERHASH);
  if (!a) return undefined;
  if (a.value.length !== 32) throw malformed(`USERHASH is ${a.value.length} bytes, not 32 (RFC 8489 §14.4)`);
  return a.value;
}

function encodeAlgorithm(alg: PasswordAlgorithm | number): Buffer {
  const { algorithm, parameters } = typeof alg === 'number' ? { algorithm: alg, parameters: Buffer.alloc(0) } : alg;
  const out = Buffer.alloc(4 + ((parameters.length + 3) & ~3));
  out.writeUInt16BE(algorithm, 0);
  out.writeUInt16BE(parameters.length, 2);
  parameters.copy(out, 4);
  return out;
}

/** RFC 8489 §14.11/§14.12: algorithm (16 bits), parameters length (16 bits), parameters, padding. */
function decodeAlgorithms(value: Buffer, name: string): PasswordAlgorithm[] {
  const out: PasswordAlgorithm[] = [];
  let offset = 0;
  while (offset < value.length) {
    if (value.length - offset < 4) throw malformed(`${name} truncated at byte ${offset}`);
    const algorithm = value.readUInt16BE(offset);
    const length = value.readUInt16BE(offset + 2);
    if (length > value.length - offset - 4) throw malformed(`${name} parameters declare ${length} bytes, ${value.length - offset - 4} left`);
    out.push({ algorithm, parameters: value.subarray(offset + 4, offset + 4 + length) });
    offset = Math.min(value.length, offset + 4 + ((length + 3) & ~3));
  }
  return out;
}

export function passwordAlgorithm(alg: PasswordAlgorithm | number): StunAttribute {
  return { type: ATTR.PASSWORD_ALGORITHM, value: encodeAlgorithm(alg) };
}

export function passwordAlgorithms(algs: ReadonlyArray<PasswordAlgorithm | number>): StunAttribute {
  return { type: ATTR.PASSWORD_ALGORITHMS, value: Buffer.concat(algs.map(encodeAlgorithm)) };
}

export function getPasswordAlgorithm(msg: StunMessage): PasswordAlgorithm | undefined {
  const a = first(msg, ATTR.PASSWORD_ALGORITHM);
  if (!a) return undefined;
  const algs = decodeAlgorithms(a.value, 'PASSWORD-ALGORITHM');
  if (algs.length !== 1) throw malformed(`PASSWORD-ALGORITHM holds ${algs.length} algorithms, not 1`);
  return algs[0];
}

export function getPasswordAlgorithms(msg: StunMessage): PasswordAlgorithm[] | undefined {
  const a = first(msg, ATTR.PASSWORD_ALGORITHMS);
  return a && decodeAlgorithms(a.value, 'PASSWORD-ALGORITHMS');
}

// ---------------------------------------------------------------------------------------------
// TURN (RFC 8656 §18) and RFC 5780 attributes with fixed-size values.

/** RFC 8656 §18.2: seconds until the allocation expires. */
export function lifetime(seconds: number): StunAttribute {
  if (!Number.isInteger(seconds) || seconds < 0 || seconds > 0xffffffff) throw new RangeError(`LIFETIME out of range: ${seconds}`);
  const value = Buffer.alloc(4);
  value.writeUInt32BE(seconds, 0);
  return { type: ATTR.LIFETIME, value };
}

export function getLifetime(msg: StunMessage): number | undefined {
  const a = first(msg, ATTR.LIFETIME);
  if (!a) return undefined;
  if (a.value.length !== 4) throw malformed(`LIFETIME is ${a.value.length} bytes, not 4 (RFC 8656 §18.2)`);
  return a.value.readUInt32BE(0);
}

/** RFC 8656 §18.8: IANA protocol number. 17 (UDP) is the only one RFC 8656 allocates; RFC 6062 adds 6 (TCP). */
export const TRANSPORT_UDP = 17;
export const TRANSPORT_TCP = 6;

export function requestedTransport(protocol: number = TRANSPORT_UDP): StunAttribute {
  if (!Number.isInteger(protocol) || protocol < 0 || protocol > 0xff) throw new RangeError(`protocol number out of range: ${protocol}`);
  return { type: ATTR.REQUESTED_TRANSPORT, value: Buffer.from([protocol, 0, 0, 0]) };
}

export function getRequestedTransport(msg: StunMessage): number | undefined {
  const a = first(msg, ATTR.REQUESTED_TRANSPORT);
  if (!a) return undefined;
  if (a.value.length !== 4) throw malformed(`REQUESTED-TRANSPORT is ${a.value.length} bytes, not 4 (RFC 8656 §18.8)`);
  return a.value[0];
}

/** RFC 8656 §18.1: channel number, then 2 RFFU bytes. Range checks are in turn.ts. */
export function channelNumber(channel: number): StunAttribute {
  if (!Number.isInteger(channel) || channel < 0 || channel > 0xffff) throw new RangeError(`channel number out of range: ${channel}`);
  const value = Buffer.alloc(4);
  value.writeUInt16BE(channel, 0);
  return { type: ATTR.CHANNEL_NUMBER, value };
}

export function getChannelNumber(msg: StunMessage): number | undefined {
  const a = first(msg, ATTR.CHANNEL_NUMBER);
  if (!a) return undefined;
  if (a.value.length !== 4) throw malformed(`CHANNEL-NUMBER is ${a.value.length} bytes, not 4 (RFC 8656 §18.1)`);
  return a.value.readUInt16BE(0);
}

/** RFC 8656 §18.4: the application data of a Send or Data indication. */
export function data(bytes: Uint8Array): StunAttribute {
  return { type: ATTR.DATA, value: bytes };
}

export function getData(msg: StunMessage): Buffer | undefined {
  return first(msg, ATTR.DATA)?.value;
}

/** RFC 8656 §18.9: no value; asks the server to set DF on relayed packets. */
export function dontFragment(): StunAttribute {
  return { type: ATTR.DONT_FRAGMENT, value: Buffer.alloc(0) };
}

/** RFC 8656 §18.6: 0x01 IPv4, 0x02 IPv6, then 3 RFFU bytes. */
export function requestedAddressFamily(family: 'IPv4' | 'IPv6'): StunAttribute {
  return { type: ATTR.REQUESTED_ADDRESS_FAMILY, value: Buffer.from([family === 'IPv4' ? FAMILY_IPV4 : FAMILY_IPV6, 0, 0, 0]) };
}

/** RFC 5780 §7.2: flags "change IP" (0x4) and "change port" (0x2), as RFC 3489 servers read them. */
export function changeRequest(opts: { changeIp?: boolean; changePort?: boolean }): StunAttribute {
  return { type: ATTR.CHANGE_REQUEST, value: Buffer.from([0, 0, 0, (opts.changeIp ? 0x04 : 0) | (opts.changePort ? 0x02 : 0)]) };
}

function first(msg: StunMessage, type: number): RawAttr | undefined {
  return msg.attributes.find((a) => a.type === type);
}
