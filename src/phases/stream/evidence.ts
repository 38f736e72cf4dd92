import type { Socket } from 'node:net';
import type { PacingReport } from '../../media/pacer.js';
import type { StreamDirection } from '../../protocol/reflector.js';
import type { Evidence } from '../../result.js';
import type { FlowCount } from './flow.js';

/** The `stream` phase's plan, what it records, and the connection it runs over. */

/** What one stream test does: the catalogue's params with their defaults applied. */
export interface StreamPlan {
  readonly direction: StreamDirection;
  readonly bytes: number;
  readonly stallMs: number;
  readonly writeBytes: number;
  readonly writeIntervalMs: number;
}

/** The upload's side of the evidence (directions upload and both). */
export interface UploadEvidence {
  writeBytes: number;
  writeIntervalMs: number;
  /** Writes made and their bytes (the stream's own bytes, before any TLS). */
  writes: number;
  writtenBytes: number;
  /** What the reflector acknowledged as arrived, in how many acks, the last one when (ms from the phase start). */
  ackedBytes: number;
  acks: number;
  lastAckMs: number | null;
  throughputBps?: number;
  /** The sender's own pacing error (src/media/pacer.ts), once every write went out. */
  pacing?: PacingReport;
}

/** Where a stream stopped, each way, as far as callprobe can know it. */
export interface StreamCutoff {
  /** Which way stopped: no progress for stallMs while bytes were still due. */
  direction: StreamDirection;
  /** From the reflector: measured on the TCP socket. */
  down?: {
    /** The flow's TCP payload from the reflector when the last byte came (handshake, proof and records included). */
    tcpPayloadBytes: number;
    /** Of which the stream's own bytes (the download). */
    streamBytes: number;
    lastAtMs: number;
  };
  /** From callprobe: what was written is measured; what arrived is what the reflector acknowledged. */
  up?: {
    /** The flow's TCP payload callprobe handed its socket, the request and everything written since included. */
    tcpPayloadBytes: number;
    writes: number;
    writtenBytes: number;
    ackedBytes: number;
    /** The flow's TCP payload offset at the end of the acknowledged bytes: what the censor let through, at least. */
    ackedTcpPayloadBytes: number | null;
    /** Writes wholly acknowledged: paced and with TCP_NODELAY each normally left as one segment, so an estimate of the data segments that arrived, not a count. */
    ackedWrites: number;
    lastAckMs: number | null;
  };
}

/** What the `stream` phase records (beside the counted traffic); the cut-off gauge reads it. */
export interface StreamEvidence extends Evidence {
  direction?: StreamDirection;
  requestedBytes?: number;
  stallMs?: number;
  proofVerified?: boolean;
  /** Download and both: the stream bytes received so far, proof and record headers left out. */
  streamBytes?: number;
  /** Download and both: when bytes from the reflector last arrived. */
  lastDataMs?: number | null;
  throughputBps?: number;
  upload?: UploadEvidence;
  /** The flow's TCP payload each way as the phase ended (src/phases/stream/flow.ts). */
  tcp?: FlowCount;
  cutoff?: StreamCutoff;
  /** At a stream_cutoff: the TCP payload offset where the stopped direction stopped, and when. */
  cutoffAtBytes?: number;
  cutoffAtMs?: number | null;
}

/** The connection under the test: its TCP socket, whether TLS runs over it, the phase's clock and signal. */
export interface StreamIo {
  readonly tcp: Socket;
  readonly encrypted: boolean;
  readonly now: () => number;
  readonly signal: AbortSignal;
}
