import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { locate } from '../config/loader.js';
import { systemResolver } from '../config/resolv.js';
import type { Config } from '../config/schema.js';
import { parseHostPort } from '../net/address.js';
import { isLoopbackHost } from '../net/cidr.js';
import type { PhaseSettings, SafetyPolicy } from '../types.js';
import { hiddenCredential } from './turn-targets.js';

/**
 * What the phases get from the volunteer's config (resolver, extra CAs, secrets) and the safety
 * policy, each value checked once here: a problem names the config file, line and field.
 */
export function settingsOf(config: Config, configFile: string | null, problems: string[]): { settings: PhaseSettings; safety: SafetyPolicy } {
  const where = (path: Array<string | number>): string => (configFile ? locate(configFile, path) : '(defaults)');
  const baseDir = configFile ? dirname(resolve(configFile)) : process.cwd();
  const resolverText = config.dns.resolver === 'system' ? systemResolver() : config.dns.resolver;
  const resolverAddr = resolverText ? parseHostPort(resolverText, 53) : null;
  if (config.dns.resolver !== 'system' && (!resolverAddr || isIP(resolverAddr.host) === 0 || resolverAddr.port === 0)) {
    problems.push(`${where(['dns', 'resolver'])}: dns.resolver: must be "system" or an IP address with an optional port`);
  }
  const extraCa: string[] = [];
  config.tls.extraCa.forEach((f, i) => {
    try {
      extraCa.push(readFileSync(isAbsolute(f) ? f : join(baseDir, f), 'utf8'));
    } catch (err) {
      problems.push(`${where(['tls', 'extraCa', i])}: tls.extraCa[${i}]: cannot read ${f}: ${(err as NodeJS.ErrnoException).code}`);
    }
  });
  const listen = parseHostPort(config.http.listen, 9465);
  if (!listen) problems.push(`${where(['http', 'listen'])}: http.listen: must be HOST:PORT`);
  else if (!isLoopbackHost(listen.host) && !config.http.token) {
    problems.push(`${where(['http', 'listen'])}: http.listen: listening beyond loopback needs http.token (at least 16 characters)`);
  }
  const settings: PhaseSettings = {
    resolver: resolverAddr && isIP(resolverAddr.host) !== 0 ? { address: resolverAddr.host, port: resolverAddr.port } : null,
    extraCa,
    userAgent: 'callprobe',
    turnCredentials: new Map(config.turn.map((t) => [t.name, hiddenCredential(t.username, t.password)])),
    mediaKey: config.media.reflectorKey ? Buffer.from(config.media.reflectorKey, 'hex') : null,
  };
  const safety: SafetyPolicy = {
    allow: config.safety.allow,
    deny: config.safety.deny,
    resolvers: resolverAddr ? [resolverAddr.host] : [],
  };
  return { settings, safety };
}
