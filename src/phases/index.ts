import type { PhaseDefinition } from './types.js';
import { dnsPhase } from './dns.js';
import { tcpPhase } from './tcp.js';
import { tlsPhase } from './tls.js';
import { websocketPhase } from './websocket.js';
import { mtprotoPhase } from './mtproto.js';
import { whatsappPhase } from './whatsapp.js';
import { stunPhase } from './stun.js';
import { turnPhase } from './turn.js';
import { mediaPhase } from './media.js';
import { streamPhase } from './stream.js';

/** Dispatch by name from the catalogue: one entry per file in src/phases/. */
export const PHASES: ReadonlyMap<string, PhaseDefinition> = new Map<string, PhaseDefinition>(
  [dnsPhase, tcpPhase, tlsPhase, websocketPhase, mtprotoPhase, whatsappPhase, stunPhase, turnPhase, mediaPhase, streamPhase].map((p) => [p.name, p as unknown as PhaseDefinition]),
);

export function phaseNames(): string[] {
  return [...PHASES.keys()];
}
