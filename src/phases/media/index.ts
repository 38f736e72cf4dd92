import { roundMs } from '../../evidence.js';
import { ProbeFailure } from '../../failure.js';
import { compareStreams, type StreamComparison } from '../../media/differentiation.js';
import { diagnose } from '../../media/diagnosis.js';
import { formatEndpoint, parseHostPort } from '../../net/address.js';
import { cryptoRng, opusLikeSize } from '../../protocol/media-packet.js';
import type { GaugeSample } from '../../types.js';
import { checkedSetting } from '../kit.js';
import { turnCredentialName } from '../turn-params.js';
import type { PhaseContext, PhaseDefinition } from '../types.js';
import { describeStream, differentiationEvidence, judge, type Judged, type MediaEvidence } from './judge.js';
import { END_MARGIN_MS, REPORT_WAIT_MS, mediaParams, mediaProblem, streamSchedule, type MediaParams } from './params.js';
import { openDirectPath, openTurnPath, type MediaPath } from './paths.js';
import { askReport } from './report.js';
import { runStream, streamPlans, type Destination, type StreamPlan } from './streams.js';

export { mediaTimeoutNeededMs } from './params.js';

/** The target, then each of `reflectors`: the places the same streams go to. */
function destinationsOf(ctx: PhaseContext<MediaParams>, address: string, p: MediaParams): Destination[] {
  const target: Destination = { name: ctx.target, address, port: ctx.endpoint.port, location: ctx.location };
  return [
    target,
    ...(p.reflectors ?? []).map((r) => {
      const hp = parseHostPort(r.address, 0)!; // the params accept IP:PORT only
      return { name: r.name, address: hp.host, port: hp.port, location: r.location };
    }),
  ];
}

function sideOf(j: Judged): { shape: string; stats: Judged['stats']; failure: Judged['failure'] } {
  return { shape: j.label, stats: j.stats, failure: j.failure };
}

/** The matrix of shapes by destinations and what src/media/diagnosis.ts reads in it. */
function diagnosisEvidence(compared: ReadonlyArray<{ service: Judged; control: Judged | null; plan: StreamPlan; comparison: StreamComparison | null }>): Record<string, unknown> {
  const matrix = compared.map(({ service, control, plan, comparison }) => ({
    shape: plan.shape,
    destination: plan.destination.name,
    location: plan.destination.location,
    service: service.failure,
    ...(control ? { control: control.failure, differentiation: comparison?.result ?? null } : {}),
  }));
  return { ...diagnose(matrix), matrix };
}
export type { MediaEvidence, MediaStreamEvidence } from './judge.js';

/** Both streams' first deadline, a little after setup so neither starts late. */
const START_DELAY_MS = 5;

/**
 * `media`: a call-like stream to a callprobe reflector and back.
 *
 * One packet every `frameMs` (20 ms: 50 packets/s) for `durationMs`, payload sizes drawn like
 * Opus voice, in one of the shapes of src/protocol/media-packet.ts, paced on the monotonic clock
 * (src/media/pacer.ts, whose own error is in evidence). The reflector echoes each authentic
 * packet, so every number is a round trip on one clock: loss, burst lengths, RFC 3550 jitter,
 * RTT percentiles, reordering, duplicates, the delivered rate per 1 s bin, the last packet that
 * came back (its index, bytes and time), and the E-model R and MOS (src/media/stats.ts). After
 * the last send the phase keeps listening for a drain of 4 × the RTT p99 seen so far (250 ms to
 * 2 s), so packets in flight are not counted as lost.
 *
 * Paths (./paths.ts): `direct` (UDP to the reflector: the target is the reflector) or `turn` (the
 * target is a TURN server; an allocation of our own is made with the credentials of the config's
 * `turn` section, a channel bound to `peer`, the reflector, and the stream goes as ChannelData
 * through the relay; the allocation is released at the end, within `releaseWaitMs`).
 *
 * Differentiation (the Wehe method): with `control`, a second stream of that shape (normally
 * `random`, the bit-inverse of the service shape: same sizes, same times, none of its bytes)
 * runs at the same moments on its own socket, over the same path. The comparison
 * (src/media/differentiation.ts) says in one sentence whether the service-shaped stream failed
 * while the control did not; its statistical test is Wehe's rule on the per-second delivered
 * rates: area between the quantile functions ≥ 0.10 and two-sample KS p < 0.05 is
 * `differentiated`, neither is `not_differentiated`, only one is `inconclusive`.
 *
 * Failure: the service stream's classification (./judge.ts), by precedence `media_no_packets` >
 * `stream_cutoff` (N = the 1-based index of the last packet that came back, with its bytes and
 * time) > `media_throttled` > `media_degraded` (thresholds as params). A socket error (an ICMP
 * port or host unreachable) ends the path: the stream stops there, `sent` counts only what was
 * really sent, and the phase fails with the error as what it is (`connection_refused`,
 * `host_unreachable`...; `pathError` in the stream's evidence), not as a cut-off or a loss of
 * packets that never left. An error with nothing back is reported likewise.
 */
export const mediaPhase: PhaseDefinition<typeof mediaParams, 'addresses', MediaEvidence> = {
  name: 'media',
  params: mediaParams,
  controlPhase: 'media',
  path: 'calls',
  needs: 'addresses',
  // Each TURN path's own addresses, and an Allocate failure's (its evidence lands at the top).
  ownAddresses: ['relays[].localAddress', 'relays[].mappedAddress', 'relays[].relayedAddress', 'mappedAddress', 'relayedAddress'],
  check: (p, planned) => mediaProblem(p, planned),
  gauges: ({ evidence }) => {
    const samples: GaugeSample[] = [];
    const streams = evidence.streams ?? [];
    const target = (evidence.destinations as Array<{ name: string }> | undefined)?.[0]?.name;
    const first = streams[0]?.shape;
    // The streams to the target only (other destinations are comparison points, in the records);
    // a control is `random`, or `random-<shape>` for the controls of the second and later shapes.
    for (const s of streams.filter((x) => target === undefined || x.destination === target)) {
      const shape = s.role === 'control' && s.controlOf !== undefined && s.controlOf !== first ? `${s.shape}-${s.controlOf}` : s.shape;
      const cut = s.failure === 'stream_cutoff' && s.cutoff ? (s.cutoff as { afterPackets?: number; afterBytesSent?: number }) : null;
      samples.push(
        { gauge: 'media_loss_ratio', shape, value: s.lossRatio },
        { gauge: 'media_jitter_seconds', shape, value: s.jitterMs / 1000 },
        { gauge: 'media_mos', shape, value: s.quality?.mos ?? null },
        { gauge: 'stream_cutoff_packets', shape, value: cut?.afterPackets ?? 0 },
        { gauge: 'stream_cutoff_bytes', shape, value: cut?.afterBytesSent ?? 0 },
      );
    }
    return samples;
  },
  states: ({ evidence }) => {
    const diagnosis = evidence.diagnosis as { result?: string } | undefined;
    return diagnosis?.result ? [{ state: 'media_diagnosis', value: diagnosis.result }] : [];
  },
  async run(ctx, { addresses }) {
    const started = performance.now();
    const p = ctx.params;
    const key = checkedSetting(ctx.settings.mediaKey, 'media.reflectorKey');
    const credential = p.via === 'turn' ? checkedSetting(ctx.settings.turnCredentials?.get(turnCredentialName(p, ctx.target)), 'the TURN credentials') : null;
    const schedule = streamSchedule(p);
    const { count, streamMs } = schedule;
    const deadline = started + ctx.timeoutMs - END_MARGIN_MS - REPORT_WAIT_MS - (credential ? p.releaseWaitMs : 0);
    const address = addresses[0];
    ctx.transport = 'udp';
    ctx.endpointUsed = formatEndpoint(address, ctx.endpoint.port);
    Object.assign(ctx.evidence, { via: p.via, frameMs: p.frameMs, durationMs: roundMs(streamMs), packetsPlanned: count });

    const destinations = destinationsOf(ctx, address, p);
    if (p.reflectors) ctx.evidence.destinations = destinations.map((d) => ({ name: d.name, address: formatEndpoint(d.address, d.port), location: d.location }));
    const plans = streamPlans(p, destinations);
    const paths: MediaPath[] = [];
    try {
      // One socket (and with TURN one allocation) per stream: each is its own flow, as two calls are.
      for (const plan of plans) {
        paths.push(credential ? await openTurnPath(ctx, address, credential) : await openDirectPath(ctx, plan.destination.address, plan.destination.port));
      }
      const sizes = Array.from({ length: count }, () => (p.sweep ? p.sweep.packetBytes : opusLikeSize(cryptoRng)));
      const startMs = performance.now() + START_DELAY_MS;
      const setupMs = roundMs(startMs - START_DELAY_MS - started);
      ctx.evidence.setupMs = setupMs;
      if (startMs + streamMs > deadline) {
        // A slow TURN setup left too little of the timeout: say so rather than measure a stream cut by it.
        throw new ProbeFailure('generic_timeout_error', `setting up the path took ${setupMs} ms: the ${streamMs} ms stream no longer fits in phaseTimeout`, {
          timeoutMs: ctx.timeoutMs,
        });
      }
      const runs = await Promise.all(
        paths.map((path, i) =>
          runStream(path, {
            ...plans[i]!,
            key,
            sizes,
            steps: schedule.steps,
            startMs,
            drainMs: p.drainMs,
            deadline,
            signal: ctx.signal,
            askReport: (flowId) => askReport(ctx, path.reflector, flowId, key),
          }),
        ),
      );
      const phaseStartMs = performance.now() - ctx.trace.now();
      const sides = runs.map((run, i) => judge(run, plans[i]!, p, { named: p.reflectors !== undefined, sweep: schedule.sweep, ipv6: address.includes(':'), phaseStartMs }));
      ctx.evidence.streams = sides.map((side) => side.evidence);
      // Each service stream with the control that ran beside it, to the same destination.
      const pairs = sides.flatMap((side, i) => (plans[i]!.role === 'service' ? [{ service: side, control: plans[i + 1]?.role === 'control' ? sides[i + 1]! : null, plan: plans[i]! }] : []));
      const compared = pairs.map((pair) => ({
        ...pair,
        comparison: pair.control ? compareStreams(sideOf(pair.service), sideOf(pair.control)) : null,
      }));
      const primary = compared[0]!;
      if (primary.comparison) ctx.evidence.differentiation = differentiationEvidence(primary.comparison);
      if (p.reflectors) ctx.evidence.diagnosis = diagnosisEvidence(compared);
      // The phase fails with the first service stream to the target that failed (the other
      // destinations are there to be compared with it); a path that failed mid-stream is the finding.
      for (const { service, plan, comparison } of compared) {
        if (plan.destination !== destinations[0]) continue;
        const at = sides.indexOf(service);
        if (runs[at]!.pathError !== null) throw runs[at]!.pathError;
        if (service.failure === null) continue;
        if (paths[at]!.error) throw paths[at]!.error;
        throw new ProbeFailure(service.failure, `${service.label} stream: ${service.failure} (${describeStream(service)})${comparison ? `; ${comparison.summary}` : ''}`);
      }
    } finally {
      await Promise.all(paths.map((x) => x.close()));
    }
  },
};
