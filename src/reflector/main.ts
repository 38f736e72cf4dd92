import { createLogger } from '../log.js';
import { formatEndpoint } from '../net/address.js';
import { loadReflectorConfig } from './config.js';
import { startReflector } from './server.js';

/**
 * `callprobe reflector --config F`: runs until SIGTERM or SIGINT. A bad config throws ConfigError
 * (the CLI prints it with FILE:LINE:COL and exits 2). Logs where it listens, never the key.
 */
export async function runReflector(configFile: string): Promise<number> {
  const config = loadReflectorConfig(configFile);
  const log = createLogger();
  const reflector = await startReflector(config, log);
  const fmt = (a: { address: string; port: number }): string => formatEndpoint(a.address, a.port);
  log.info(
    {
      udp: reflector.udp.map(fmt),
      tcp: reflector.tcp.map(fmt),
      tls: reflector.tls.map(fmt),
      metrics: reflector.metricsAddress ? fmt(reflector.metricsAddress) : null,
      limits: config.limits,
    },
    'reflector listening',
  );
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info({ signal }, 'reflector stopping');
      void reflector.close().then(resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}
