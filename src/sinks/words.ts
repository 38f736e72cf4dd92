/**
 * Names and codes in words a volunteer reads: the page, `callprobe once` and the report say
 * "Telegram calls: connecting fails (refused)" rather than `telegram/dc2 tcp connection_refused`.
 * A name not listed here is shown as it is: a new service or phase needs no code to be displayed.
 */

const SERVICES: Readonly<Record<string, string>> = {
  whatsapp: 'WhatsApp',
  telegram: 'Telegram',
  turn: 'Your TURN relays',
  control: 'Controls',
  max: 'Max',
  signal: 'Signal',
  viber: 'Viber',
};

const PATHS: Readonly<Record<string, string>> = { messaging: 'messaging', calls: 'calls' };

/** What each phase does, as the step of a call that breaks. */
const STEPS: Readonly<Record<string, string>> = {
  dns: 'looking up the name',
  tcp: 'connecting',
  tls: 'the TLS handshake',
  websocket: 'the WebSocket upgrade',
  mtproto: 'the Telegram handshake',
  whatsapp: 'the WhatsApp handshake',
  stun: 'reaching the STUN server',
  turn: 'relaying through TURN',
  media: 'the call-like audio stream',
  stream: 'the data stream',
};

/** What a failure code means, briefly; the code itself is always shown beside it. */
const FAILURES: Readonly<Record<string, string>> = {
  dns_nxdomain_error: 'the name does not exist',
  dns_no_answer: 'no address for the name',
  dns_servfail_error: 'the resolver failed',
  dns_refused_error: 'the resolver refused',
  dns_bogon_error: 'a fake (bogon) address came back',
  dns_mismatch: 'a different address than expected came back',
  generic_timeout_error: 'no answer (timed out)',
  connection_refused: 'refused',
  connection_reset: 'cut off by a reset',
  eof_error: 'closed before answering',
  host_unreachable: 'host unreachable',
  network_unreachable: 'network unreachable',
  ssl_invalid_hostname: 'the certificate names another host',
  ssl_unknown_authority: 'the certificate is not trusted',
  ssl_invalid_certificate: 'the certificate is invalid',
  ssl_failed_handshake: 'the handshake failed',
  ws_bad_status: 'the upgrade was refused',
  proto_malformed: 'the answer was not the protocol',
  proto_mismatch: 'the answer was not for us',
  proto_error: 'the server answered with an error',
  cert_chain_invalid: 'the certificate chain does not verify',
  turn_unauthorized: 'the TURN credentials were rejected',
  turn_forbidden: 'the TURN server refused',
  turn_quota: 'the TURN quota is used up',
  turn_insufficient_capacity: 'the TURN server is full',
  relay_timeout: 'nothing came back through the relay',
  stream_cutoff: 'it stopped part-way',
  media_no_packets: 'not a single packet came back',
  media_degraded: 'too much loss or jitter',
  media_throttled: 'throttled',
  policy_denied: "callprobe's own allowlist refused it",
  interrupted: 'the run was interrupted',
  internal_error: 'a bug in callprobe',
  unknown_failure: 'an unknown error',
};

export function serviceName(service: string): string {
  return SERVICES[service] ?? service;
}

/** "WhatsApp calls", "Telegram messaging", "Your TURN relays calls" reads badly: the TURN service is calls only. */
export function answerTitle(service: string, path: string): string {
  if (service === 'turn') return serviceName(service);
  return `${serviceName(service)} ${PATHS[path] ?? path}`;
}

export function stepWords(phase: string): string {
  return STEPS[phase] ?? phase;
}

export function failureWords(code: string): string {
  return FAILURES[code] ?? code;
}

/** "connecting fails: refused (connection_refused)". */
export function failingStep(phase: string | null, code: string | null): string {
  if (!code) return '';
  return `${phase ? `${stepWords(phase)} fails: ` : ''}${failureWords(code)} (${code})`;
}

/** What a verdict's scope says. */
export function scopeWords(scope: string | null): string {
  switch (scope) {
    case 'service':
      return 'only this service fails: other foreign destinations work';
    case 'foreign':
      return 'everything foreign fails while domestic destinations work: an allowlist';
    case 'network':
      return 'the controls fail too: the network here is down';
    default:
      return '';
  }
}

/** "3 h 20 min", "45 min", "2 d 4 h", "30 s": how long a state has lasted. */
export function durationWords(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return h > 0 ? `${d} d ${h} h` : `${d} d`;
  if (h > 0) return m > 0 ? `${h} h ${m} min` : `${h} h`;
  if (m > 0) return `${m} min`;
  return `${s} s`;
}

/** "2026-11-30 14:05 UTC": minutes are what a person reads; the ISO form stays in the data. */
export function utcMinute(iso: string): string {
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}
