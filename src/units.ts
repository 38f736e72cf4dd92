/**
 * Durations and sizes as people write them in YAML ("10s", "16MiB"), parsed to milliseconds and
 * bytes: shared by the volunteer's config, the reflector's config and phase parameters.
 */
import { z } from 'zod';

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const DURATION_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION_HINT = 'use e.g. 500ms, 10s, 5m, 1h';

/** The text of a value that is not what was expected, for the message saying so. */
function shown(value: unknown): string {
  return JSON.stringify(value) ?? String(value);
}

function durationMs(text: string): number | null {
  const m = DURATION.exec(text.trim());
  return m ? Math.round(Number(m[1]) * DURATION_MS[m[2]!]!) : null;
}

/** "1500ms", "10s", "5m", "1h", "7d", or a number of seconds. Parsed to milliseconds. */
export const duration = z
  .union([z.number(), z.string()], { error: (issue) => `not a duration: ${shown(issue.input)} (${DURATION_HINT}, or a number of seconds)` })
  .transform((value, ctx) => {
    const ms = typeof value === 'number' ? (Number.isFinite(value) && value >= 0 ? Math.round(value * 1000) : null) : durationMs(value);
    if (ms === null) {
      const hint = typeof value === 'number' ? `${DURATION_HINT}, or a number of seconds` : DURATION_HINT;
      ctx.addIssue({ code: 'custom', message: `not a duration: ${shown(value)} (${hint})` });
      return z.NEVER;
    }
    return ms;
  });

/**
 * A duration from `min` to `max` (written as in YAML, e.g. "10s"). The maximum is never above
 * Node's timer limit (2^31 - 1 ms, about 24.8 days): a longer timer fires after 1 ms instead.
 */
export function durationBetween(min: string, max: string, why: string) {
  const minMs = durationMs(min);
  const maxMs = durationMs(max);
  if (minMs === null || maxMs === null || maxMs > 2 ** 31 - 1) throw new Error(`bad duration bounds ${min}..${max}`);
  return duration.superRefine((ms, ctx) => {
    if (ms < minMs) ctx.addIssue({ code: 'custom', message: `must be at least ${min} (${why})` });
    else if (ms > maxMs) ctx.addIssue({ code: 'custom', message: `must be at most ${max}` });
  });
}

const SIZE = /^(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$/;
const SIZE_BYTES: Readonly<Record<string, number>> = {
  B: 1,
  KB: 1e3,
  KiB: 1024,
  MB: 1e6,
  MiB: 1024 ** 2,
  GB: 1e9,
  GiB: 1024 ** 3,
};
const SIZE_HINT = 'use e.g. 16MiB, 512KB, 1GiB';

function sizeBytes(text: string): number | null {
  const m = SIZE.exec(text.trim());
  return m ? Math.round(Number(m[1]) * SIZE_BYTES[m[2] ?? 'B']!) : null;
}

/** "64MiB", "512 KB", or a number of bytes. */
export const size = z
  .union([z.number(), z.string()], { error: (issue) => `not a size: ${shown(issue.input)} (${SIZE_HINT}, or a number of bytes)` })
  .transform((value, ctx) => {
    const bytes = typeof value === 'number' ? (Number.isSafeInteger(value) && value >= 0 ? value : null) : sizeBytes(value);
    if (bytes === null) {
      const hint = typeof value === 'number' ? `${SIZE_HINT}, or a whole number of bytes` : SIZE_HINT;
      ctx.addIssue({ code: 'custom', message: `not a size: ${shown(value)} (${hint})` });
      return z.NEVER;
    }
    return bytes;
  });

/** A size of at least `min` (written as in YAML, e.g. "64KiB"). */
export function sizeAtLeast(min: string, why: string) {
  const minBytes = sizeBytes(min);
  if (minBytes === null) throw new Error(`bad size bound ${min}`);
  return size.refine((bytes) => bytes >= minBytes, `must be at least ${min} (${why})`);
}
