import { pino, type Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;

/**
 * JSON lines on stdout (journald- and Docker-friendly). Credentials never reach a log line: the
 * redact paths cover every place a config carries one.
 */
export function createLogger(level: string = process.env.CALLPROBE_LOG_LEVEL ?? 'info'): Logger {
  return pino({
    name: 'callprobe',
    level,
    redact: {
      paths: ['*.password', '*.credential', '*.token', '*.reflectorKey', '*.key', 'config.http.token', '*.turn[*].password', 'config.media.reflectorKey'],
      censor: '[redacted]',
    },
  });
}

/** A logger that writes nothing, for tests and for `callprobe once` without --verbose. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
