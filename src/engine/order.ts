import { createHash, randomBytes } from 'node:crypto';

/**
 * The order probes run in is itself a variable: one UDP flow to a hosting network has been seen
 * to block that network for 10-30 minutes (ntc.party/t/16713 via net4people/bbs#417; Flowseal
 * zapret-discord-youtube#5156), so what ran before can decide how the next probe ends. The order
 * is random, so no target always runs after the same one, and seeded, so a record names the seed
 * and its place and the order can be replayed.
 */

/** A fresh seed: 8 random bytes as hex. */
export function newSeed(): string {
  return randomBytes(8).toString('hex');
}

/** A deterministic stream of numbers in [0, 1) from a seed (mulberry32 over the seed's SHA-256). */
export function seededRandom(seed: string): () => number {
  let state = createHash('sha256').update(seed).digest().readUInt32LE(0);
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fisher-Yates with the given random source; a new array. */
export function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
