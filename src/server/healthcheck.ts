import { loadYaml } from '../config/loader.js';
import { configSchema } from '../config/schema.js';
import { formatEndpoint, parseHostPort } from '../net/address.js';

/** Unspecified listen addresses are reached on loopback from the same host (or container). */
const LOOPBACK_FOR: Readonly<Record<string, string>> = { '0.0.0.0': '127.0.0.1', '::': '::1' };

/** The /healthz URL of a daemon listening on `listen`, or why there is none. */
export function healthzUrl(listen: string): string | Error {
  const address = parseHostPort(listen, 9465);
  if (!address) return new Error(`http.listen ${listen} is not IP:PORT`);
  if (address.port === 0) return new Error('http.listen has port 0 (a free port chosen at start): there is no fixed address to check');
  return `http://${formatEndpoint(LOOPBACK_FOR[address.host] ?? address.host, address.port)}/healthz`;
}

/**
 * `callprobe healthcheck --config FILE`: asks the daemon the config describes for /healthz at the
 * address it listens on (served without the token). For a container's HEALTHCHECK: exit 0 when
 * the daemon answers "ok", 1 when it does not; a bad config is a ConfigError (exit 2).
 */
export async function healthcheck(configFile: string, timeoutMs = 5_000): Promise<number> {
  const config = loadYaml(configFile, configSchema);
  const url = config.http.enabled ? healthzUrl(config.http.listen) : new Error('http.enabled is false: there is no /healthz to check');
  if (url instanceof Error) {
    process.stderr.write(`callprobe healthcheck: ${url.message}\n`);
    return 1;
  }
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    const body = (await res.json()) as { status?: unknown };
    const healthy = res.status === 200 && body.status === 'ok';
    (healthy ? process.stdout : process.stderr).write(`${url}: ${res.status} ${String(body.status)}\n`);
    return healthy ? 0 : 1;
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
    process.stderr.write(`${url}: ${cause}\n`);
    return 1;
  }
}
