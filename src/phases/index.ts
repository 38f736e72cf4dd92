import type { PhaseDefinition, PhaseRegistry } from './types.js';
import { dnsPhase } from './dns.js';
import { tcpPhase } from './tcp.js';
import { tlsPhase } from './tls.js';
import { websocketPhase } from './websocket.js';
import { mtprotoPhase } from './mtproto.js';
import { whatsappPhase } from './whatsapp.js';
import { stunPhase } from './stun.js';
import { turnPhase } from './turn.js';
import { mediaPhase } from './media/index.js';
import { streamPhase } from './stream/index.js';
import { tgReflectorPhase } from './tg-reflector.js';
import { turnChallengePhase } from './turn-challenge.js';

/** A registry of phases by name (the plan, the runner and the sinks look phases up in it). */
export function phaseRegistry(definitions: readonly PhaseDefinition[]): PhaseRegistry {
  return new Map(definitions.map((p) => [p.name, p]));
}

/** The phases callprobe ships: one file each in src/phases/, dispatched by name from the catalogues. */
export const PHASES: PhaseRegistry = phaseRegistry([
  dnsPhase,
  tcpPhase,
  tlsPhase,
  websocketPhase,
  mtprotoPhase,
  whatsappPhase,
  stunPhase,
  turnPhase,
  turnChallengePhase,
  tgReflectorPhase,
  mediaPhase,
  streamPhase,
] as unknown as PhaseDefinition[]);
