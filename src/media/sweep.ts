/**
 * Policer discovery: the media stream steps its rate up (for example 32, 64, 128, 256 and
 * 512 kbit/s, a few seconds each, packets of one size) and this reads, step by step, how much came
 * back, and where the delivered rate stopped following the offered one (the knee). A policer
 * drops what exceeds its rate (Flach et al., "An Internet-Wide Analysis of Traffic Policing",
 * SIGCOMM 2016): below its rate a step comes back whole, above it the delivered rate stays flat at
 * the policed rate. Russia throttled Twitter this way to 130-150 kbit/s in 2021 (Xue et al.,
 * IMC 2021). Pure: the plan and the packets in, numbers out.
 *
 * Rates here are of UDP payload (what callprobe sends); a policer counts IP packets, so its rate
 * is higher by the headers (28 bytes a packet over IPv4, 48 over IPv6): `policedIpKbps` says what
 * the policer's own setting would be.
 */

export interface SweepStep {
  /** The offered rate, kbit/s of UDP payload. */
  readonly rateKbps: number;
  readonly count: number;
  readonly intervalMs: number;
  /** Bytes of each packet (UDP payload). */
  readonly size: number;
}

/** The steps of a sweep: each rate for `stepMs`, packets of `packetLength` bytes. */
export function sweepSteps(ratesKbps: readonly number[], stepMs: number, packetLength: number): SweepStep[] {
  return ratesKbps.map((rateKbps) => {
    const intervalMs = (packetLength * 8) / rateKbps;
    return { rateKbps, intervalMs, size: packetLength, count: Math.max(1, Math.round(stepMs / intervalMs)) };
  });
}

export interface SweepStepResult {
  readonly offeredKbps: number;
  readonly sent: number;
  readonly received: number;
  /** Round trip: the echoes of this step's packets, over the step's duration. */
  readonly deliveredKbps: number;
  readonly deliveredRatio: number;
}

export interface SweepKnee {
  /** The first step delivered below `minRatio` of what it offered. */
  readonly atKbps: number;
  /** The step before it (the highest rate that came back whole), or null when the first step already fell short. */
  readonly lastCleanKbps: number | null;
  /** The median delivered rate of the steps from the knee on: the policed rate, kbit/s of payload, and as the policer counts. */
  readonly policedKbps: number;
  readonly policedIpKbps: number;
}

export interface SweepResult {
  readonly steps: readonly SweepStepResult[];
  readonly knee: SweepKnee | null;
}

/** A step that brings back less than this of what it offered is past the knee. */
export const DEFAULT_KNEE_RATIO = 0.9;

export function analyseSweep(
  steps: readonly SweepStep[],
  receivedSeqs: Iterable<number>,
  opts: { headerBytes: number; minRatio?: number } = { headerBytes: 28 },
): SweepResult {
  const minRatio = opts.minRatio ?? DEFAULT_KNEE_RATIO;
  const got = new Set(receivedSeqs);
  let first = 0;
  const results = steps.map((step) => {
    let received = 0;
    for (let seq = first; seq < first + step.count; seq++) if (got.has(seq)) received++;
    first += step.count;
    const seconds = (step.count * step.intervalMs) / 1000;
    const deliveredKbps = (received * step.size * 8) / 1000 / seconds;
    return { offeredKbps: step.rateKbps, sent: step.count, received, deliveredKbps, deliveredRatio: received / step.count };
  });
  const at = results.findIndex((r) => r.deliveredRatio < minRatio);
  if (at < 0) return { steps: results, knee: null };
  const above = results.slice(at).map((r) => r.deliveredKbps).sort((a, b) => a - b);
  const policedKbps = above[Math.floor((above.length - 1) / 2)]!;
  const size = steps[at]!.size;
  return {
    steps: results,
    knee: {
      atKbps: results[at]!.offeredKbps,
      lastCleanKbps: at > 0 ? results[at - 1]!.offeredKbps : null,
      policedKbps,
      policedIpKbps: (policedKbps * (size + opts.headerBytes)) / size,
    },
  };
}
