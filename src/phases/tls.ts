import type { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import { connect, createSecureContext, rootCertificates, type SecureContext, type TLSSocket } from 'node:tls';
import { z } from 'zod';
import { ProbeFailure, classify, failureOf } from '../failure.js';
import { abortable } from '../net/abort.js';
import { absorbErrors, wrapConnection } from '../net/connection.js';
import { watchStreamEnd, type StreamEnd } from '../net/stream-end.js';
import { isIpLiteral } from '../net/address.js';
import type { PhaseSettings } from '../types.js';
import type { PhaseDefinition } from './types.js';

const params = z
  .object({
    /** ALPN protocols to offer, e.g. [h2, http/1.1]. */
    alpn: z.array(z.string().min(1)).optional(),
    /** Server name (SNI and the name checked in the certificate); defaults to the target's host. */
    sni: z.string().min(1).optional(),
  })
  .strict();

/**
 * `tls`: the handshake over the open TCP connection. The certificate is checked by hand after the
 * handshake (not by `rejectUnauthorized`) so that its subject, issuer and validity are in the
 * evidence even when it fails: a censor's substitute certificate is itself evidence.
 */
export const tlsPhase: PhaseDefinition<typeof params, 'connection'> = {
  name: 'tls',
  params,
  controlPhase: 'tls',
  needs: 'connection',
  async run(ctx, { connection }) {
    const servername = ctx.params.sni ?? ctx.endpoint.sni ?? (isIpLiteral(ctx.endpoint.host) ? undefined : ctx.endpoint.host);
    ctx.transport = 'tls';
    ctx.evidence.sni = servername ?? null;
    ctx.trace.wire(connection.tcp);
    const socket = connect({
      socket: connection.tcp,
      // Node checks the certificate against `servername || host || 'localhost'`: an IP-literal
      // target without SNI must be checked against its IP, not against localhost.
      host: ctx.endpoint.host,
      servername,
      ALPNProtocols: ctx.params.alpn,
      secureContext: secureContextFor(ctx.settings),
      rejectUnauthorized: false,
    });
    ctx.atRunEnd(() => socket.destroy());
    absorbErrors(socket);
    try {
      await handshake(socket, connection.tcp, ctx.signal);
    } finally {
      ctx.trace.settle();
    }
    ctx.evidence.protocol = socket.getProtocol();
    ctx.evidence.alpn = socket.alpnProtocol || null;
    ctx.evidence.cipher = socket.getCipher().name;
    // The leaf as an X509Certificate, parsed only as far as read: getPeerCertificate() turns the
    // whole certificate (the detailed form the whole chain) into JS objects, which cost more CPU
    // than the rest of a TLS probe together (bench/probes.ts).
    const cert = socket.getPeerX509Certificate();
    ctx.evidence.certificate = cert ? describeCertificate(cert) : null;
    if (!socket.authorized) {
      const c = classify({ code: String(socket.authorizationError), message: String(socket.authorizationError) }, 'tls');
      throw new ProbeFailure(c.code, `certificate not trusted: ${String(socket.authorizationError)}`, {
        error: String(socket.authorizationError),
      });
    }
    if (cert && (servername !== undefined || isIpLiteral(ctx.endpoint.host))) {
      const name = servername ?? ctx.endpoint.host.replace(/^\[|\]$/g, '');
      if (!matchesName(cert, name)) {
        throw new ProbeFailure('ssl_invalid_hostname', `the certificate is not for ${name} (subjectAltName: ${cert.subjectAltName?.slice(0, 256) ?? 'none'})`, {
          error: 'ERR_TLS_CERT_ALTNAME_INVALID',
        });
      }
    }
    return { connection: wrapConnection(connection, { stream: socket, transport: 'tls' }) };
  },
};

/**
 * Parsing the CA store costs far more than a handshake (about 140 roots), so it is done once per
 * plan, not per connection: the settings object is replaced on reload, which drops the cache.
 */
const contexts = new WeakMap<PhaseSettings, SecureContext>();
function secureContextFor(settings: PhaseSettings): SecureContext {
  let context = contexts.get(settings);
  if (!context) {
    context = createSecureContext({ ca: [...rootCertificates, ...settings.extraCa] });
    contexts.set(settings, context);
  }
  return context;
}

function handshake(socket: TLSSocket, tcp: Socket, signal: AbortSignal): Promise<void> {
  return abortable<void>(signal, (resolve, reject) => {
    // Node turns an end of stream during the handshake into an error of its own (ECONNRESET without
    // a syscall: an orderly close), and an RST that came right after data may be reported as that
    // end (net/stream-end.ts): once the stream ended, the kernel's answer decides.
    let ended: Promise<StreamEnd> | null = null;
    const stopWatching = watchStreamEnd(socket, tcp, (answer) => (ended = answer));
    const onError = (err: Error): void => {
      if (!ended) return reject(failureOf(err, 'tls'));
      void ended.then((end) => reject(failureOf(end.how === 'rst' ? end.error : err, 'tls')));
    };
    socket.once('secureConnect', resolve);
    socket.once('error', onError);
    return () => {
      stopWatching();
      socket.off('secureConnect', resolve);
      socket.off('error', onError);
    };
  });
}

/**
 * RFC 6125 §6 name matching, by OpenSSL: an IP literal against the certificate's IP addresses only,
 * a name against its DNS names (the subject's CN only when it has none), a wildcard only as the
 * whole leftmost label, as tls.checkServerIdentity enforces.
 */
function matchesName(cert: X509Certificate, name: string): boolean {
  if (isIpLiteral(name)) return cert.checkIP(name) !== undefined;
  return cert.checkHost(name, { subject: 'default', wildcards: true, partialWildcards: false, multiLabelWildcards: false, singleLabelSubdomains: false }) !== undefined;
}

function describeCertificate(cert: X509Certificate): Record<string, unknown> {
  return {
    subject: commonName(cert.subject),
    subjectAltName: cert.subjectAltName?.slice(0, 512) ?? null,
    issuer: commonName(cert.issuer) ?? attribute(cert.issuer, 'O'),
    validFrom: new Date(cert.validFrom).toISOString(),
    validTo: new Date(cert.validTo).toISOString(),
    serialNumber: cert.serialNumber,
    fingerprint256: cert.fingerprint256,
  };
}

/** One attribute of a distinguished name as X509Certificate prints it (one `KEY=value` per line). */
function attribute(dn: string, key: string): string | null {
  for (const line of dn.split('\n')) if (line.startsWith(`${key}=`)) return line.slice(key.length + 1);
  return null;
}

function commonName(dn: string): string | null {
  return attribute(dn, 'CN');
}
