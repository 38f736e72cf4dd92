import { z } from 'zod';
import type { Conversation } from '../net/conversation.js';
import { hexPrefix } from '../evidence.js';
import type { Evidence } from '../result.js';
import { WaNoiseClient } from '../protocol/noise.js';
import { connectionHeader, DEFAULT_MAX_FRAME_SIZE, FrameDecoder, PROTOCOL_MAX_FRAME_SIZE } from '../protocol/waframe.js';
import { requireVerified, verifyCertChain, WA_ROOT_PUBLIC_KEY } from '../protocol/wacert.js';
import { converse, websocketBefore } from './kit.js';
import type { PhaseDefinition } from './types.js';

const byte = z.number().int().min(0).max(255);

const params = z
  .object({
    /**
     * The connection header's two bytes after 'W' 'A' (docs/protocols.md#framing-and-the-connection-header). Required: they live in the
     * catalogue only, so a version bump at WhatsApp is a data change.
     */
    header: z.object({ magic: byte, dictVersion: byte }).strict(),
    /** The Noise root's Curve25519 public key, 64 hex digits; default WhatsApp's published root (the lab sets its own). */
    rootKey: z
      .string()
      .regex(/^[0-9a-fA-F]{64}$/, 'must be a 32-byte key as 64 hex digits')
      .optional(),
    /** The largest frame taken from the server; a larger declared length is proto_malformed before any of it is buffered. */
    maxFrameBytes: z.number().int().min(1024).max(PROTOCOL_MAX_FRAME_SIZE).optional(),
  })
  .strict();

/**
 * `whatsapp`: the first round trip of WhatsApp's Noise handshake over the open TCP connection or
 * WebSocket. Sends the connection header and a ClientHello with a fresh ephemeral (43 bytes), reads
 * the ServerHello, decrypts the server's static key and certificate chain with our ephemeral's keys
 * (only a real Noise peer answering *us* can have sealed them), and verifies the chain up to the
 * root. It stops there: no ClientFinish, no identity, no account.
 *
 * Failures: a ServerHello not sealed for our ephemeral is `proto_mismatch` (a replay, or a
 * middlebox that cannot do the server's DH); bytes that are not a ServerHello, or a frame length
 * above `maxFrameBytes`, are `proto_malformed` (the connection is closed at once: a hostile length
 * never makes us buffer); a chain that does not verify is `cert_chain_invalid`. Transport endings
 * come from openConversation (`eof_error`, `connection_reset`), silence from the runner's timeout.
 */
export const whatsappPhase: PhaseDefinition<typeof params, 'connection'> = {
  name: 'whatsapp',
  params,
  controlPhase: 'tcp',
  needs: 'connection',
  check: (_p, planned) => websocketBefore('whatsapp', planned),
  async run(ctx, { connection }) {
    const header = connectionHeader(ctx.params.header.magic, ctx.params.header.dictVersion);
    const rootKey = ctx.params.rootKey ? Buffer.from(ctx.params.rootKey, 'hex') : WA_ROOT_PUBLIC_KEY;
    const client = new WaNoiseClient({ header });
    ctx.evidence.header = hexPrefix(header);
    ctx.evidence.rootKey = hexPrefix(rootKey);
    ctx.evidence.staticDecrypted = false;

    const conversation = converse(ctx, connection);
    conversation.send(client.firstBytes);
    const decoder = new FrameDecoder({ maxFrameSize: ctx.params.maxFrameBytes ?? DEFAULT_MAX_FRAME_SIZE });
    const close = connection.ws ? () => connection.ws!.terminate() : () => connection.stream.destroy();
    const frame = await firstFrame(conversation, decoder, ctx.evidence, close);
    ctx.evidence.serverHelloBytes = frame.length; // the frame's payload, without its 3-byte length

    const opened = client.readServerHello(frame);
    ctx.evidence.staticDecrypted = true;
    ctx.evidence.serverStatic = hexPrefix(opened.serverStatic);
    const chain = verifyCertChain(opened.certChain, {
      serverStatic: opened.serverStatic,
      // The wall clock, as whatsmeow checks validity: a vantage with a wrong clock shows it here.
      now: Math.floor(Date.now() / 1000),
      rootPublicKey: rootKey,
    });
    ctx.evidence.certChain = chain;
    requireVerified(chain);
  },
};

/**
 * Reads until the server's first whole frame is in. A framing error (a length above the limit)
 * closes the connection before the error propagates, so the peer cannot push more into our
 * buffers; a stream that ends inside a frame reports how much of it had arrived.
 */
async function firstFrame(conversation: Conversation, decoder: FrameDecoder, evidence: Evidence, close: () => void): Promise<Uint8Array> {
  for (;;) {
    let chunk: Buffer;
    try {
      chunk = await conversation.receive();
    } catch (err) {
      if (decoder.bufferedBytes > 0) evidence.partialFrameBytes = decoder.bufferedBytes;
      throw err;
    }
    let frames: Uint8Array[];
    try {
      frames = decoder.push(chunk);
    } catch (err) {
      close();
      throw err;
    }
    const frame = frames[0];
    if (frame !== undefined) return frame;
  }
}
