import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from '../log.js';

/**
 * Which targets have answered at this vantage a probe whose silence is otherwise ambiguous (a call
 * server's Binding, a reflector's ping): after one answer, silence from them is evidence. Kept in
 * the data directory so that a restart does not forget it; a missing or unreadable file means
 * nothing is known yet, never a failure to start.
 */
export class KnownResponsive {
  private readonly answered = new Map<string, string>();
  private writeTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly file: string | null,
    private readonly log?: Logger,
  ) {
    if (file === null) return;
    try {
      const saved = JSON.parse(readFileSync(file, 'utf8')) as { targets?: Record<string, unknown> };
      for (const [id, at] of Object.entries(saved.targets ?? {})) if (typeof at === 'string') this.answered.set(id, at);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log?.warn({ err, file }, 'known-responsive targets unreadable: starting from none');
    }
  }

  has(id: string): boolean {
    return this.answered.has(id);
  }

  /** When the target last answered at this vantage (ISO 8601), or null. */
  lastAnswered(id: string): string | null {
    return this.answered.get(id) ?? null;
  }

  record(id: string, at: string): void {
    const known = this.answered.has(id);
    this.answered.set(id, at);
    // The first answer matters at once (it changes verdicts); later ones only move the date.
    if (!known) this.save();
    else this.writeTimer ??= setTimeout(() => this.save(), 60_000).unref();
  }

  /** Written whole to a temporary file and renamed over the old one, so a crash never leaves half a file. */
  save(): void {
    if (this.writeTimer) clearTimeout(this.writeTimer);
    this.writeTimer = null;
    if (this.file === null) return;
    try {
      mkdirSync(dirname(this.file), { recursive: true, mode: 0o750 });
      const tmp = `${this.file}.tmp`;
      writeFileSync(tmp, JSON.stringify({ targets: Object.fromEntries(this.answered) }) + '\n', { mode: 0o640 });
      renameSync(tmp, this.file);
    } catch (err) {
      this.log?.error({ err, file: this.file }, 'could not save the known-responsive targets');
    }
  }
}
