/**
 * The report: after a media stream, the prober asks the reflector, on a new UDP flow, how much of
 * the stream's flow reached it. The echoes already carry the reflector's counts, but only while
 * echoes come back: when the path goes silent, only a question on a flow the censor has not
 * frozen can tell "the reflector stopped hearing us" (uplink) from "it kept hearing us and its
 * echoes were lost" (downlink). Pure: bytes in, values out.
 *
 * ## The request (48 bytes)
 *
 *   nonce (16, random) | sealed fields (32: ./sealed.ts, label "media report v1", over the nonce)
 *   fields = flow id (u32 BE) | 12 zero bytes
 *
 * ## The reply (32 bytes: shorter than the request, so nothing is amplified)
 *
 *   sealed fields (label "media report reply v1", over the request's tag)
 *   fields = packets received (u32) | bytes received (u32) | highest sequence received (u32;
 *            0xFFFFFFFF: none) | packets echoed (u32)
 *
 * The reply's tag covers the request's, so an old reply cannot answer a new question. A flow the
 * reflector does not know (never seen, or forgotten) reads as nothing received.
 */
import { randomBytes } from 'node:crypto';
import { mismatch, malformed } from './errors.js';
import { SEALED_FIELDS_LENGTH, SEALED_LENGTH, saturateUint32, seal, sealLabels, unseal } from './sealed.js';

const NONCE_LENGTH = 16;
export const REPORT_REQUEST_LENGTH = NONCE_LENGTH + SEALED_LENGTH;
export const REPORT_REPLY_LENGTH = SEALED_LENGTH;
const NO_SEQUENCE = 0xffffffff;
const REQUEST = sealLabels('media report v1');
const REPLY = sealLabels('media report reply v1');

/** What the reflector knows of one flow. */
export interface FlowReport {
  readonly packets: number;
  readonly bytes: number;
  /** The highest sequence number received, null when nothing was. */
  readonly highestSeq: number | null;
  readonly echoed: number;
}

export interface ReportRequest {
  readonly bytes: Buffer;
  readonly flowId: number;
  /** The request's tag: the reply's tag covers it. */
  readonly tag: Buffer;
}

export function encodeReportRequest(flowId: number, key: Uint8Array, nonce: Uint8Array = randomBytes(NONCE_LENGTH)): ReportRequest {
  if (!Number.isInteger(flowId) || flowId < 0 || flowId > 0xffffffff) throw new RangeError(`flow id out of range: ${flowId}`);
  if (nonce.length !== NONCE_LENGTH) throw new RangeError(`nonce must be ${NONCE_LENGTH} bytes`);
  const fields = Buffer.alloc(SEALED_FIELDS_LENGTH);
  fields.writeUInt32BE(flowId, 0);
  const { wire, tag } = seal(key, REQUEST, nonce, fields);
  return { bytes: Buffer.concat([nonce, wire]), flowId, tag };
}

/** The flow asked about and the request's tag, or null if these bytes are not an authentic report request. Never throws on wire input. */
export function verifyReportRequest(input: Uint8Array, key: Uint8Array): ReportRequest | null {
  if (input.length !== REPORT_REQUEST_LENGTH) return null;
  const opened = unseal(key, REQUEST, input.subarray(0, NONCE_LENGTH), input.subarray(NONCE_LENGTH));
  // Reserved bytes must be zero: a later version may give them a meaning.
  if (!opened || opened.fields.subarray(4).some((b) => b !== 0)) return null;
  return { bytes: Buffer.from(input), flowId: opened.fields.readUInt32BE(0), tag: opened.tag };
}

export function encodeReportReply(request: Pick<ReportRequest, 'tag'>, report: FlowReport, key: Uint8Array): Buffer {
  const fields = Buffer.alloc(SEALED_FIELDS_LENGTH);
  fields.writeUInt32BE(saturateUint32(report.packets), 0);
  fields.writeUInt32BE(saturateUint32(report.bytes), 4);
  fields.writeUInt32BE(report.highestSeq === null ? NO_SEQUENCE : saturateUint32(report.highestSeq), 8);
  fields.writeUInt32BE(saturateUint32(report.echoed), 12);
  return seal(key, REPLY, request.tag, fields).wire;
}

/** The reflector's report in answer to `request`: `proto_malformed` for a wrong length, `proto_mismatch` for anything not its answer. */
export function decodeReportReply(input: Uint8Array, request: Pick<ReportRequest, 'tag'>, key: Uint8Array): FlowReport {
  if (input.length !== REPORT_REPLY_LENGTH) throw malformed(`report reply of ${input.length} bytes, expected ${REPORT_REPLY_LENGTH}`, { length: input.length });
  const opened = unseal(key, REPLY, request.tag, input);
  if (!opened) throw mismatch('report reply does not answer our request under our key');
  const f = opened.fields;
  const highest = f.readUInt32BE(8);
  return { packets: f.readUInt32BE(0), bytes: f.readUInt32BE(4), highestSeq: highest === NO_SEQUENCE ? null : highest, echoed: f.readUInt32BE(12) };
}
