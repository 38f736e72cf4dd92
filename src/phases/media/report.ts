import { setTimeout as sleep } from 'node:timers/promises';
import { classify } from '../../failure.js';
import { decodeReportReply, encodeReportRequest, type FlowReport } from '../../protocol/media-report.js';
import type { Evidence } from '../../result.js';
import { openDatagram } from '../kit.js';
import type { PhaseContext } from '../types.js';
import { REPORT_WAIT_MS } from './params.js';

/** Where a stream's reflector listens (the target, or the relay's peer). */
export interface ReflectorAddress {
  readonly address: string;
  readonly port: number;
}

/** The report request goes out at 0, 250 and 500 ms; the answer may come until 1000 ms. */
const REPORT_TRIES = 3;
const REPORT_RETRY_MS = 250;

export interface ReportOutcome {
  /** What the reflector says it received of the flow, or null when no answer came. */
  readonly report: FlowReport | null;
  readonly requestsSent: number;
  /** Why there is no report (a socket error, silence), for the evidence. */
  readonly error?: string;
  /** The report flow's own bytes and datagrams, each way. */
  readonly traffic: Evidence;
}

/**
 * Asks the reflector, from a new socket (so a new flow to a censor), what it received of one
 * stream's flow (src/protocol/media-report.ts). Only after the stream: a censor that freezes a
 * flow has no reason to freeze the next one at once, so this question gets through where the
 * stream's echoes no longer do; where it does not (the whole destination cut), the direction of
 * the cut stays unknown and the evidence says so.
 */
export async function askReport(ctx: PhaseContext<unknown, Evidence>, reflector: ReflectorAddress, flowId: number, key: Uint8Array): Promise<ReportOutcome> {
  const traffic: Evidence = {};
  const life = new AbortController();
  const signal = AbortSignal.any([ctx.signal, life.signal, AbortSignal.timeout(REPORT_WAIT_MS)]);
  let requestsSent = 0;
  try {
    const channel = await openDatagram(ctx, { ...reflector, into: traffic, signal });
    const request = encodeReportRequest(flowId, key);
    const sender = (async () => {
      for (let i = 0; i < REPORT_TRIES && !signal.aborted; i++) {
        if (channel.send(request.bytes)) requestsSent++;
        await sleep(REPORT_RETRY_MS, undefined, { signal }).catch(() => {});
      }
    })();
    try {
      for (;;) {
        const reply = await channel.receive();
        try {
          return { report: decodeReportReply(reply, request, key), requestsSent, traffic };
        } catch {
          // Not the answer to this request (a stray datagram): keep listening.
        }
      }
    } finally {
      life.abort();
      channel.close();
      await sender;
    }
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    const error = signal.aborted && !life.signal.aborted ? `no answer within ${REPORT_WAIT_MS} ms` : classify(err).error;
    return { report: null, requestsSent, error, traffic };
  }
}
