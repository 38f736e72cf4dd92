/**
 * A classic libpcap file (the format tcpdump writes: pcap-savefile(5)) of UDP datagrams over
 * IPv4 and Ethernet, for handing packets we build to independent tools (nDPI's ndpiReader,
 * tshark) without sending them anywhere. The addresses only label the flows; nothing is sent.
 */

export interface PcapDatagram {
  readonly src: string;
  readonly dst: string;
  readonly srcPort: number;
  readonly dstPort: number;
  readonly payload: Uint8Array;
  /** Seconds since the epoch (fractional). */
  readonly time: number;
}

const LINKTYPE_ETHERNET = 1;
const ETHERTYPE_IPV4 = 0x0800;
const IPPROTO_UDP = 17;

export function pcapFile(datagrams: readonly PcapDatagram[]): Buffer {
  const header = Buffer.alloc(24);
  header.writeUInt32LE(0xa1b2c3d4, 0); // microsecond timestamps
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(65535, 16); // snaplen
  header.writeUInt32LE(LINKTYPE_ETHERNET, 20);
  return Buffer.concat([header, ...datagrams.map(record)]);
}

function record(d: PcapDatagram): Buffer {
  const frame = Buffer.concat([ethernet(), ipv4(d), udp(d), Buffer.from(d.payload)]);
  const rec = Buffer.alloc(16);
  const seconds = Math.floor(d.time);
  rec.writeUInt32LE(seconds, 0);
  rec.writeUInt32LE(Math.round((d.time - seconds) * 1e6), 4);
  rec.writeUInt32LE(frame.length, 8);
  rec.writeUInt32LE(frame.length, 12);
  return Buffer.concat([rec, frame]);
}

function ethernet(): Buffer {
  const e = Buffer.alloc(14);
  e.set([0x02, 0, 0, 0, 0, 2], 0);
  e.set([0x02, 0, 0, 0, 0, 1], 6);
  e.writeUInt16BE(ETHERTYPE_IPV4, 12);
  return e;
}

function ipv4(d: PcapDatagram): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + 8 + d.payload.length, 2);
  h[8] = 64;
  h[9] = IPPROTO_UDP;
  h.set(d.src.split('.').map(Number), 12);
  h.set(d.dst.split('.').map(Number), 16);
  h.writeUInt16BE(checksum(h), 10);
  return h;
}

/** RFC 791 header checksum. */
function checksum(h: Buffer): number {
  let sum = 0;
  for (let i = 0; i < h.length; i += 2) sum += h.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function udp(d: PcapDatagram): Buffer {
  const u = Buffer.alloc(8);
  u.writeUInt16BE(d.srcPort, 0);
  u.writeUInt16BE(d.dstPort, 2);
  u.writeUInt16BE(8 + d.payload.length, 4);
  // Checksum 0: "no checksum" over IPv4 (RFC 768).
  return u;
}
