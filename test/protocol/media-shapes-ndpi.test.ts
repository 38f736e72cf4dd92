import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, expect, it } from 'vitest';
import { SERVICE_SHAPES, deterministicRng, encodeMediaPacket, opusLikeSize, type MediaShape, type ServiceShape } from '../../src/protocol/media-packet.js';
import { pcapFile, type PcapDatagram } from '../helpers/pcap.js';
import { describeNeeding } from '../helpers/requires.js';

const run = promisify(execFile);
const KEY = Buffer.alloc(32, 0x42);
/** Not a port any dissector keys on: the labels come from the bytes alone. */
const PORT = 50000;
const FLOWS_PER_SHAPE = 4;
const PACKETS = 30;

async function ndpiMissing(): Promise<string | null> {
  try {
    const { stdout, stderr } = await run('ndpiReader', ['-h']).catch((e: { stdout?: string; stderr?: string }) => ({ stdout: e.stdout ?? '', stderr: e.stderr ?? '' }));
    return /nDPI/.test(stdout + stderr) ? null : 'ndpiReader did not identify itself';
  } catch {
    return 'ndpiReader is not installed (apt-get install -y libndpi-bin)';
  }
}

interface Flow {
  label: string;
  shape: MediaShape;
  controlOf?: ServiceShape;
}

/** Every service shape and its bit-inverted control, each as call-like flows echoed both ways. */
const FLOWS: Flow[] = [
  ...SERVICE_SHAPES.map((s): Flow => ({ label: s, shape: s })),
  ...SERVICE_SHAPES.map((s): Flow => ({ label: `random of ${s}`, shape: 'random', controlOf: s })),
];

function capture(): { pcap: Buffer; labelOfPort: Map<number, string> } {
  const datagrams: PcapDatagram[] = [];
  const labelOfPort = new Map<number, string>();
  let port = 40000;
  for (const flow of FLOWS) {
    for (let n = 0; n < FLOWS_PER_SHAPE; n++) {
      const rng = deterministicRng(`ndpi ${flow.label} ${n}`);
      const srcPort = port++;
      labelOfPort.set(srcPort, flow.label);
      for (let seq = 0; seq < PACKETS; seq++) {
        const p = encodeMediaPacket({ ...flow, flowId: srcPort * 7919, seq, sendTimeUs: seq * 20_000, payloadSize: opusLikeSize(rng), key: KEY, rng });
        const t = 1_700_000_000 + srcPort + seq * 0.02;
        datagrams.push({ src: '198.18.1.2', dst: '198.18.2.2', srcPort, dstPort: PORT, payload: p, time: t });
        datagrams.push({ src: '198.18.2.2', dst: '198.18.1.2', srcPort: PORT, dstPort: srcPort, payload: p, time: t + 0.005 });
      }
    }
  }
  return { pcap: pcapFile(datagrams), labelOfPort };
}

/**
 * The media shapes as an independent classifier sees them: Debian's nDPI (ndpiReader 4.2) reads
 * a capture of each shape's call-like flows (built here, never sent) and labels each flow. What
 * it says is a fact about nDPI 4.2, asserted exactly: `whatsapp-stun` is WhatsApp's call traffic
 * to it (message type 0x0800), `rtp` is RTP, our plain STUN relay shape is also labelled
 * WhatsAppCall (nDPI 4.2 takes STUN-framed relay data for WhatsApp), the shapes it has no rule for
 * are Unknown, and no bit-inverted control is recognised as anything: the Wehe controls carry
 * none of the service's bytes.
 */
describeNeeding(await ndpiMissing(), 'media shapes through nDPI (ndpiReader, an independent classifier)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'callprobe-ndpi-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('labels each shape as nDPI 4.2 knows it, and every inverted control Unknown', async () => {
    const { pcap, labelOfPort } = capture();
    const file = join(dir, 'shapes.pcap');
    writeFileSync(file, pcap);
    const { stdout } = await run('ndpiReader', ['-i', file, '-v', '2'], { maxBuffer: 16 * 1024 * 1024 });
    expect(stdout).toMatch(/Using nDPI \(4\.2\./);
    const seen = new Map<string, Set<string>>();
    for (const m of stdout.matchAll(/UDP 198\.18\.1\.2:(\d+) <-> 198\.18\.2\.2:50000 \[proto: [\d.]+\/([^\]]+)\]/g)) {
      const label = labelOfPort.get(Number(m[1]))!;
      if (!seen.has(label)) seen.set(label, new Set());
      seen.get(label)!.add(m[2]!);
    }
    const verdicts = Object.fromEntries([...seen].map(([label, protos]) => [label, [...protos].sort().join(' | ')]));
    expect(verdicts).toEqual({
      whatsapp: 'Unknown',
      'whatsapp-stun': 'STUN.WhatsAppCall',
      telegram: 'Unknown',
      'telegram-reflector': 'Unknown',
      rtp: 'RTP',
      stun: 'STUN.WhatsAppCall',
      ...Object.fromEntries(SERVICE_SHAPES.map((s) => [`random of ${s}`, 'Unknown'])),
    });
  });
});
