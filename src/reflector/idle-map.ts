/**
 * A map kept in least- to most-recently-used order, whose entries expire when idle and which
 * forgets its least recently used entry when full: the shape of the reflector's state per source
 * (limits.ts) and per media flow (flows.ts), so that neither a flood nor a long run grows it.
 * A Map iterates in insertion order; using an entry re-inserts it.
 */
export class IdleMap<V extends { lastSeenMs: number }> {
  private readonly entries = new Map<string, V>();

  constructor(
    private readonly idleMs: number,
    private readonly max: number,
    /** Hears of each entry forgotten to make room (not for idling): the table is too small, or under attack. */
    private readonly onEvict: (key: string) => void = () => {},
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** The entry (marking it used at `nowMs`), or undefined. */
  touch(key: string, nowMs: number): V | undefined {
    const v = this.entries.get(key);
    if (!v) return undefined;
    this.entries.delete(key);
    this.entries.set(key, v);
    v.lastSeenMs = nowMs;
    return v;
  }

  /** The entry without marking it used. */
  peek(key: string): V | undefined {
    return this.entries.get(key);
  }

  /** Adds a new entry, first making room if full (idle ones, then the least recently used). */
  add(key: string, value: V, nowMs: number): V {
    if (this.entries.size >= this.max) {
      this.expire(nowMs);
      if (this.entries.size >= this.max) {
        const oldest = this.entries.keys().next().value as string;
        this.entries.delete(oldest);
        this.onEvict(oldest);
      }
    }
    this.entries.set(key, value);
    return value;
  }

  /** Forgets entries idle longer than idleMs; returns how many. */
  expire(nowMs: number): number {
    let n = 0;
    for (const [key, v] of this.entries) {
      // Least recently used first: the first one still fresh ends the sweep.
      if (nowMs - v.lastSeenMs <= this.idleMs) break;
      this.entries.delete(key);
      n++;
    }
    return n;
  }
}
