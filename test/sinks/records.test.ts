import { appendFileSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RecordWriter, TornRecordError, readRecords } from '../../src/sinks/records.js';
import { result } from '../helpers/results.js';

describe('JSON-lines records', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'callprobe-records-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('writes one ProbeResult per line and reads them back, newest last', async () => {
    const w = new RecordWriter({ dir, maxFileBytes: 1 << 20, maxTotalBytes: 1 << 24, queueLength: 100, now: () => new Date('2026-11-22T10:00:00Z') });
    const written = [1, 2, 3].map((i) => result({ target: `t${i}`, startedAt: `2026-11-22T10:00:0${i}.000Z` }));
    for (const r of written) w.write(r);
    await w.close();
    expect(readdirSync(dir)).toEqual(['callprobe-20261122-0000.jsonl']);
    const lines = readFileSync(join(dir, 'callprobe-20261122-0000.jsonl'), 'utf8').split('\n');
    expect(lines).toHaveLength(4);
    expect(JSON.parse(lines[0]!)).toEqual(written[0]);
    expect((await readRecords(dir, { limit: 10 })).map((r) => r.target)).toEqual(['t1', 't2', 't3']);
    expect((await readRecords(dir, { limit: 2 })).map((r) => r.target)).toEqual(['t2', 't3']);
    expect((await readRecords(dir, { limit: 10, since: new Date('2026-11-22T10:00:02Z') })).map((r) => r.target)).toEqual(['t2', 't3']);
  });

  it('rotates by size and by UTC day, and keeps the directory, the file being written included, within the total', async () => {
    let now = new Date('2026-11-21T23:59:00Z');
    const line = JSON.stringify(result()).length + 1;
    const w = new RecordWriter({ dir, maxFileBytes: line * 3, maxTotalBytes: line * 7, queueLength: 1000, now: () => now });
    const totals: number[] = [];
    const total = () => readdirSync(dir).reduce((sum, f) => sum + statSync(join(dir, f)).size, 0);
    for (let i = 0; i < 10; i++) {
      if (i === 5) now = new Date('2026-11-22T00:00:30Z');
      w.write(result());
      await w.flush();
      totals.push(total() / line);
    }
    await w.close();
    // Day 1: 3 + 2 lines; day 2: 3 + 2 lines. Opening a file deletes the oldest files until the
    // others and a full file fit in 7 lines: day 1's two files go when day 2's files open.
    expect(totals).toEqual([1, 2, 3, 4, 5, 3, 4, 5, 4, 5]);
    expect(readdirSync(dir).sort()).toEqual(['callprobe-20261122-0000.jsonl', 'callprobe-20261122-0001.jsonl']);
    expect(await readRecords(dir, { limit: 100 })).toHaveLength(5);
  });

  it('skips a torn last line on read, and cuts it off before appending after a restart, reporting the bytes', async () => {
    const now = () => new Date('2026-11-22T10:00:00Z');
    const file = join(dir, 'callprobe-20261122-0000.jsonl');
    const w = new RecordWriter({ dir, maxFileBytes: 1 << 20, maxTotalBytes: 1 << 24, queueLength: 10, now });
    const before = result({ target: 'before' });
    w.write(before);
    await w.close();
    const torn = '{"schema":1,"id":"torn","phases":[{"pha'; // 39 bytes
    expect(Buffer.byteLength(torn)).toBe(39);
    appendFileSync(file, torn);
    expect((await readRecords(dir, { limit: 10 })).map((r) => r.target)).toEqual(['before']);
    const errors: unknown[] = [];
    const again = new RecordWriter({ dir, maxFileBytes: 1 << 20, maxTotalBytes: 1 << 24, queueLength: 10, now, onError: (err) => errors.push(err) });
    const after = result({ target: 'after' });
    again.write(after);
    await again.close();
    expect(readdirSync(dir)).toEqual(['callprobe-20261122-0000.jsonl']);
    // Every line is a whole record (as jq and log shippers need): the fragment is gone, not ended.
    const expected = JSON.stringify(before) + '\n' + JSON.stringify(after) + '\n';
    expect(readFileSync(file, 'utf8')).toBe(expected);
    expect(statSync(file).size).toBe(Buffer.byteLength(expected));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(TornRecordError);
    expect(errors[0]).toMatchObject({ file, bytes: 39 });
    expect((errors[0] as Error).message).toBe(
      'callprobe-20261122-0000.jsonl: removed a torn last line (39 bytes after the last newline, left by a crash or power cut)',
    );
  });

  it('a file that is all torn line (a crash during its first write) is emptied, then written', async () => {
    const now = () => new Date('2026-11-22T10:00:00Z');
    const file = join(dir, 'callprobe-20261122-0000.jsonl');
    writeFileSync(file, 'x'.repeat(100_000)); // more than one read chunk, no newline at all
    const errors: TornRecordError[] = [];
    const w = new RecordWriter({ dir, maxFileBytes: 1 << 20, maxTotalBytes: 1 << 24, queueLength: 10, now, onError: (err) => errors.push(err as TornRecordError) });
    const r = result();
    w.write(r);
    await w.close();
    expect(readFileSync(file, 'utf8')).toBe(JSON.stringify(r) + '\n');
    expect(errors.map((e) => e.bytes)).toEqual([100_000]);
  });

  it('syncs written records to the disk: within the sync interval, before rotating, and on close', async () => {
    const probe = await open(join(dir, 'probe'), 'w');
    const handleProto = Object.getPrototypeOf(probe) as FileHandle;
    await probe.close();
    rmSync(join(dir, 'probe'));
    const synced: string[] = [];
    const original = handleProto.sync;
    const spy = vi.spyOn(handleProto, 'sync').mockImplementation(function (this: FileHandle) {
      synced.push(basename(readlinkSync(`/proc/self/fd/${this.fd}`)));
      return original.call(this);
    });
    try {
      const line = JSON.stringify(result()).length + 1;
      const w = new RecordWriter({ dir, maxFileBytes: line * 2, maxTotalBytes: line * 8, queueLength: 10, syncIntervalMs: 40, now: () => new Date('2026-11-22T10:00:00Z') });
      const dirName = basename(dir);
      w.write(result());
      await w.flush();
      // A new file: its name is synced (the directory), its data not yet.
      expect(synced).toEqual([dirName]);
      await vi.waitFor(() => expect(synced).toHaveLength(2), { timeout: 5_000, interval: 10 });
      expect(synced).toEqual([dirName, 'callprobe-20261122-0000.jsonl']);
      await sleep(200); // nothing new written: no sync
      expect(synced).toHaveLength(2);
      w.write(result());
      await w.flush();
      w.write(result()); // the third line rotates: the old file is synced before the new one opens
      await w.flush();
      expect(synced).toEqual([dirName, 'callprobe-20261122-0000.jsonl', 'callprobe-20261122-0000.jsonl', dirName]);
      await w.close();
      expect(synced.slice(4)).toEqual(['callprobe-20261122-0001.jsonl']);
    } finally {
      spy.mockRestore();
    }
  });

  it('reads backwards with a bounded scan: the newest results first, never the whole directory', async () => {
    const w = new RecordWriter({ dir, maxFileBytes: 1 << 20, maxTotalBytes: 1 << 24, queueLength: 5000, now: () => new Date('2026-11-22T10:00:00Z') });
    for (let i = 0; i < 2000; i++) w.write(result({ target: `t${i}` }));
    await w.close();
    const line = JSON.stringify(result({ target: 't1000' })).length + 1;
    expect((await readRecords(dir, { limit: 3 })).map((r) => r.target)).toEqual(['t1997', 't1998', 't1999']);
    // A scan budget of about 10 lines returns only what fits in it, newest last.
    const bounded = await readRecords(dir, { limit: 1000, maxScanBytes: line * 10 });
    expect(bounded.length).toBeGreaterThanOrEqual(9);
    expect(bounded.length).toBeLessThanOrEqual(10);
    expect(bounded.at(-1)!.target).toBe('t1999');
    // Lines spanning the 64 KiB read chunks are reassembled: all 2000 come back, in order.
    expect((await readRecords(dir, { limit: 5000 })).map((r) => r.target)).toEqual(Array.from({ length: 2000 }, (_, i) => `t${i}`));
  });

  it('drops and counts results when the queue is full, never blocking', async () => {
    let dropped = 0;
    const w = new RecordWriter({ dir, maxFileBytes: 1 << 20, maxTotalBytes: 1 << 24, queueLength: 2, onDrop: (n) => (dropped += n) });
    const accepted = [1, 2, 3, 4, 5].map(() => w.write(result()));
    await w.close();
    // The first write starts draining at once, so the queue holds two more before it is full.
    expect(accepted.filter(Boolean).length + dropped).toBe(5);
    expect(dropped).toBeGreaterThanOrEqual(2);
    expect(await readRecords(dir, { limit: 10 })).toHaveLength(5 - dropped);
  });
});
