import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { ProbeFailure } from '../failure.js';
import type { Conversation } from '../net/conversation.js';
import { hexPrefix } from '../evidence.js';
import { protocolError } from '../protocol/errors.js';
import { NONCE_LENGTH, clientMessageId, decodeResPQ, encodeReqPqMulti, type ResPQ } from '../protocol/mtproto.js';
import { createFrameDecoder, createFrameEncoder, type FrameDecoder, type MtprotoTransport } from '../protocol/mtproto-transport.js';
import { createObfuscated2Client, type ObfuscatedTransport } from '../protocol/obfuscated2.js';
import type { Evidence } from '../result.js';
import { converse, websocketBefore } from './kit.js';
import type { PhaseDefinition } from './types.js';

/** The transports a catalogue may ask for (core.telegram.org/mtproto/mtproto-transports). */
const TRANSPORTS = ['abridged', 'intermediate', 'padded_intermediate', 'full', 'obfuscated2'] as const;
/** What obfuscated2 may carry here: tdlib sends intermediate, or padded intermediate for MTProxy "dd" secrets (td/mtproto/TcpTransport.cpp). */
const OBFUSCATED_INNER = ['intermediate', 'padded_intermediate'] as const;

const params = z
  .object({
    /** Default obfuscated2, what the official apps send (tdlib ConnectionCreator uses ObfuscatedTcp). Over a WebSocket only obfuscated2 is allowed. */
    transport: z.enum(TRANSPORTS).default('obfuscated2'),
    /** The transport inside obfuscated2; default intermediate, as tdlib without a proxy. */
    inner: z.enum(OBFUSCATED_INNER).optional(),
    /**
     * The DC id, written into the obfuscated2 header (bytes 60-61, int16 LE): a DC routes the
     * connection by it. Production DCs are 1-5; tdlib adds 10000 for test DCs and negates for media DCs.
     */
    dc: z.number().int().min(-32768).max(32767).refine((n) => n !== 0, 'dc must not be 0'),
  })
  .strict()
  .refine((p) => p.inner === undefined || p.transport === 'obfuscated2', {
    message: 'inner is only for transport: obfuscated2',
    path: ['inner'],
  });

type Params = z.infer<typeof params>;

/**
 * WebSocket close code that carries a transport error as its reason, e.g. 1000 "-404"
 * (docs/protocols.md#mtproto-over-websocket).
 */
const WS_NORMAL_CLOSURE = 1000;
const DECIMAL_ERROR_CODE = /^-\d{1,10}$/;
const MAX_FINGERPRINTS_IN_EVIDENCE = 16;

/**
 * `mtproto`: the first step of MTProto's key exchange (core.telegram.org/mtproto/auth_key) over
 * the connection the earlier phases opened: an unencrypted `req_pq_multi` with a fresh nonce,
 * answered by `resPQ` echoing it. That proves a Telegram DC answered, not just an open port.
 * Nothing more is sent (no DH exchange, no account).
 *
 * Over TCP (from `tcp`; DCs do not speak TLS, docs/protocols.md#data-centres, so no tls under it) any transport; over a
 * WebSocket (from `websocket`) always obfuscated2, which Telegram's WebSocket endpoints require.
 * The request goes out as one write, so a censor matching the first payload sees all of it.
 */
export const mtprotoPhase: PhaseDefinition<typeof params, 'connection'> = {
  name: 'mtproto',
  params,
  // The domestic control's TCP connection proves the network under a DC connection.
  controlPhase: 'tcp',
  needs: 'connection',
  check: (p, planned) =>
    websocketBefore('mtproto', planned) ??
    (planned.endpoint.url && p.transport !== 'obfuscated2' ? `Telegram's WebSocket endpoints need transport obfuscated2, not ${p.transport}` : null),
  async run(ctx, { connection }) {
    const channel = openChannel(ctx.params);
    const nonce = randomBytes(NONCE_LENGTH);
    const request = encodeReqPqMulti(nonce, clientMessageId(Date.now()));
    Object.assign(ctx.evidence, channel.describe, { nonceHex: hexPrefix(nonce) });

    const conversation = converse(ctx, connection);
    conversation.send(channel.wrap(request));
    const res = await readResPQ(conversation, channel, nonce, ctx.evidence);
    ctx.evidence.serverNonceHex = hexPrefix(res.serverNonce);
    ctx.evidence.pqHex = hexPrefix(res.pq);
    // Bounded like all evidence: a real DC lists a handful of keys (three in the samples-auth_key page).
    ctx.evidence.fingerprints = res.fingerprintsHex.slice(0, MAX_FINGERPRINTS_IN_EVIDENCE);
    ctx.evidence.fingerprintCount = res.fingerprintsHex.length;
  },
};

/** One MTProto transport as the client speaks it: how a request goes out, how answers come back. */
interface Channel {
  /** Evidence naming the transport (`mtprotoTransport`, `obfuscated2Inner`, `dc`). */
  readonly describe: Evidence;
  /** The bytes for the wire: tag or obfuscated2 header, then the framed (and encrypted) request. */
  wrap(payload: Uint8Array): Uint8Array;
  /** Bytes from the wire into the framer (decrypted first under obfuscated2). */
  readonly decoder: FrameDecoder;
  unwrap(chunk: Uint8Array): Uint8Array;
}

function openChannel(p: Params): Channel {
  if (p.transport !== 'obfuscated2') {
    const transport: MtprotoTransport = p.transport;
    const encoder = createFrameEncoder(transport);
    return {
      describe: { mtprotoTransport: transport, dc: p.dc },
      wrap: (payload) => encoder.encode(payload),
      decoder: createFrameDecoder(transport),
      unwrap: (chunk) => chunk,
    };
  }
  const inner: ObfuscatedTransport = p.inner ?? 'intermediate';
  const obfuscation = createObfuscated2Client(inner, p.dc);
  // The header carries the tag, so the inner framer sends none (mtproto-transports, "Transport obfuscation").
  const encoder = createFrameEncoder(inner, { sendTag: false });
  return {
    describe: { mtprotoTransport: 'obfuscated2', obfuscated2Inner: inner, dc: p.dc },
    wrap: (payload) => Buffer.concat([obfuscation.header, obfuscation.encrypt(encoder.encode(payload))]),
    decoder: createFrameDecoder(inner),
    unwrap: (chunk) => obfuscation.decrypt(chunk),
  };
}

/** Reads until the transport delivers one frame: a resPQ for our nonce, or a failure. */
async function readResPQ(conversation: Conversation, channel: Channel, nonce: Uint8Array, evidence: Evidence): Promise<ResPQ> {
  for (;;) {
    let chunk: Buffer;
    try {
      chunk = await conversation.receive();
    } catch (err) {
      throw transportErrorInClose(err) ?? err;
    }
    const frames = channel.decoder.push(channel.unwrap(chunk));
    const frame = frames[0];
    if (frame === undefined) continue;
    if (frame.kind === 'transport_error') {
      throw protocolError(`MTProto transport error ${frame.code}`, { transportError: frame.code, transportErrorFramed: frame.framed });
    }
    const res = decodeResPQ(frame.payload, nonce);
    evidence.resPqDeclaredLength = res.declaredLength;
    evidence.resPqBodyLength = res.bodyLength;
    return res;
  }
}

/**
 * Telegram's WebSocket endpoints report a transport error by closing with 1000 and the decimal
 * code as the reason (docs/protocols.md#mtproto-over-websocket): that is `proto_error`, not a plain EOF.
 */
function transportErrorInClose(err: unknown): ProbeFailure | null {
  if (!(err instanceof ProbeFailure) || err.code !== 'eof_error') return null;
  const { wsCloseCode, wsCloseReason } = err.evidence;
  if (wsCloseCode !== WS_NORMAL_CLOSURE || typeof wsCloseReason !== 'string' || !DECIMAL_ERROR_CODE.test(wsCloseReason)) return null;
  const code = Number(wsCloseReason);
  return protocolError(`MTProto transport error ${code} (WebSocket close ${wsCloseCode})`, {
    transportError: code,
    wsCloseCode,
    wsCloseReason,
  });
}
