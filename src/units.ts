/**
 * Durations and sizes as people write them in YAML ("10s", "16MiB"), parsed to milliseconds and
 * bytes: shared by the volunteer's config, the reflector's config and phase parameters.
 */
import { z } from 'zod';

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const DURATION_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "1500ms", "10s", "5m", "1h", "7d", or a number of seconds. Parsed to milliseconds. */
export const duration = z
  .union([z.number().nonnegative(), z.string()])
  .transform((value, ctx) => {
    if (typeof value === 'number') return Math.round(value * 1000);
    const m = DURATION.exec(value.trim());
    if (!m) {
      ctx.addIssue({ code: 'custom', message: `not a duration: ${JSON.stringify(value)} (use e.g. 500ms, 10s, 5m, 1h)` });
      return z.NEVER;
    }
    return Math.round(Number(m[1]) * DURATION_MS[m[2]!]!);
  });

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

/** "64MiB", "512 KB", or a number of bytes. */
export const size = z
  .union([z.number().int().nonnegative(), z.string()])
  .transform((value, ctx) => {
    if (typeof value === 'number') return value;
    const m = SIZE.exec(value.trim());
    if (!m) {
      ctx.addIssue({ code: 'custom', message: `not a size: ${JSON.stringify(value)} (use e.g. 16MiB, 512KB, 1GiB)` });
      return z.NEVER;
    }
    return Math.round(Number(m[1]) * SIZE_BYTES[m[2] ?? 'B']!);
  });
