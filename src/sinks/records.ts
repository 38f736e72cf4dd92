import { mkdirSync } from 'node:fs';
import { open, readdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { ProbeResult } from '../result.js';

export interface RecordsOptions {
  dir: string;
  maxFileBytes: number;
  /** The whole directory, the file being written included. */
  maxTotalBytes: number;
  /** Results waiting to be written; past this they are dropped and counted, never blocking probes. */
  queueLength: number;
  /** Written records are synced to the disk at most this long after being written (default 5 s). */
  syncIntervalMs?: number;
  onDrop?(count: number): void;
  /** A write, sync or rotation failed, or a torn last line was cut off after a crash (TornRecordError). */
  onError?(err: unknown): void;
  now?: () => Date;
}

const FILE_PATTERN = /^callprobe-(\d{8})-(\d{4})\.jsonl$/;
const BATCH_BYTES = 256 * 1024;
const SYNC_INTERVAL_MS = 5_000;

/**
 * A records file ended in the middle of a line (a crash or a power cut mid-write): the fragment
 * was removed so that every line of the file is a whole record. Reported through `onError`, as
 * the record it was part of is lost.
 */
export class TornRecordError extends Error {
  constructor(
    readonly file: string,
    readonly bytes: number,
  ) {
    super(`${basename(file)}: removed a torn last line (${bytes} bytes after the last newline, left by a crash or power cut)`);
    this.name = 'TornRecordError';
  }
}

/**
 * One JSON line per ProbeResult under `dir`, in files rotated by size and by UTC day, the total
 * capped by deleting the oldest files first: months unattended never fill a disk. Writes are
 * queued and appended in batches; a slow disk costs queued results (counted), never a probe.
 * Written lines are synced to the disk within `syncIntervalMs`, at rotation and on close.
 */
export class RecordWriter {
  private queue: string[] = [];
  private handle: FileHandle | null = null;
  private current: { name: string; day: string; bytes: number } | null = null;
  private writing: Promise<void> | null = null;
  /** Bytes written since the last sync. */
  private unsynced = 0;
  private syncDue = false;
  private syncTimer: NodeJS.Timeout | null = null;
  private readonly now: () => Date;
  private readonly batchBytes: number;

  constructor(private readonly options: RecordsOptions) {
    this.now = options.now ?? (() => new Date());
    // A batch never makes a file grow past maxFileBytes (unless one line alone is larger).
    this.batchBytes = Math.min(BATCH_BYTES, options.maxFileBytes);
    mkdirSync(options.dir, { recursive: true, mode: 0o750 });
  }

  /** Queues one result; returns false (and counts a drop) when the queue is full. */
  write(result: ProbeResult): boolean {
    if (this.queue.length >= this.options.queueLength) {
      this.options.onDrop?.(1);
      return false;
    }
    this.queue.push(JSON.stringify(result) + '\n');
    this.kick();
    return true;
  }

  /** Resolves when everything queued so far is written (not necessarily synced). */
  async flush(): Promise<void> {
    while (this.writing || this.queue.length > 0) {
      this.kick();
      await this.writing;
    }
  }

  /** Writes what is queued, syncs it and closes the file. */
  async close(): Promise<void> {
    await this.flush();
    if (this.syncTimer) clearTimeout(this.syncTimer);
    this.syncTimer = null;
    try {
      await this.sync().catch((err) => this.options.onError?.(err));
    } finally {
      await this.handle?.close();
      this.handle = null;
      this.current = null;
    }
  }

  /** Starts the one writer task (writes, rotation and syncs never overlap) if there is work. */
  private kick(): void {
    if (this.writing || (this.queue.length === 0 && !this.syncDue)) return;
    this.writing = this.drain()
      .catch((err) => this.options.onError?.(err))
      .finally(() => {
        this.writing = null;
        if (this.queue.length > 0 || this.syncDue) this.kick();
      });
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const batch: string[] = [];
      let bytes = 0;
      while (this.queue.length > 0) {
        const size = Buffer.byteLength(this.queue[0]!);
        if (batch.length > 0 && bytes + size > this.batchBytes) break;
        batch.push(this.queue.shift()!);
        bytes += size;
      }
      await this.ensureFile(bytes);
      await this.handle!.appendFile(batch.join(''));
      this.current!.bytes += bytes;
      this.unsynced += bytes;
      this.armSync();
    }
    if (this.syncDue) await this.sync();
  }

  /** A sync within syncIntervalMs of the first unsynced write; the timer never keeps the process up. */
  private armSync(): void {
    if (this.syncTimer) return;
    this.syncTimer = setTimeout(() => {
      this.syncTimer = null;
      this.syncDue = true;
      this.kick();
    }, this.options.syncIntervalMs ?? SYNC_INTERVAL_MS);
    this.syncTimer.unref();
  }

  private async sync(): Promise<void> {
    this.syncDue = false;
    if (!this.handle || this.unsynced === 0) return;
    this.unsynced = 0;
    await this.handle.sync();
  }

  private async ensureFile(incoming: number): Promise<void> {
    const day = utcDay(this.now());
    const c = this.current;
    if (c && c.day === day && (c.bytes === 0 || c.bytes + incoming <= this.options.maxFileBytes)) return;
    // What was written to the old file reaches the disk before the new file exists.
    await this.sync();
    await this.handle?.close();
    this.handle = null;
    const name = await this.nextName(day);
    const path = join(this.options.dir, name);
    this.handle = await open(path, 'a+', 0o640);
    const { size } = await this.handle.stat();
    this.current = { name, day, bytes: await dropTornTail(this.handle, size, path, this.options.onError) };
    if (size === 0) await syncDirectory(this.options.dir); // the new file's name survives a power cut
    await enforceTotal(this.options.dir, this.options.maxTotalBytes, this.options.maxFileBytes, name);
  }

  private async nextName(day: string): Promise<string> {
    const seqs = (await listRecordFiles(this.options.dir)).filter((f) => f.day === day).map((f) => f.seq);
    const last = seqs.length > 0 ? Math.max(...seqs) : -1;
    // Continue the newest file of the day after a restart if it still has room.
    if (last >= 0 && !this.current) {
      const name = fileName(day, last);
      if ((await stat(join(this.options.dir, name))).size < this.options.maxFileBytes) return name;
    }
    return fileName(day, last + 1);
  }
}

/**
 * A file opened for appending after a crash may end in a torn line: cut it off at the last
 * newline, so that strict readers (jq, log shippers) see only whole records, and report the bytes
 * dropped. Returns the size after.
 */
async function dropTornTail(handle: FileHandle, size: number, path: string, onError: RecordsOptions['onError']): Promise<number> {
  if (size === 0) return 0;
  let end = size;
  const chunk = Buffer.alloc(READ_CHUNK);
  while (end > 0) {
    const length = Math.min(READ_CHUNK, end);
    await handle.read(chunk, 0, length, end - length);
    const newline = chunk.subarray(0, length).lastIndexOf(0x0a);
    if (newline !== -1) {
      end = end - length + newline + 1;
      break;
    }
    end -= length;
  }
  if (end === size) return size;
  await handle.truncate(end);
  await handle.sync();
  onError?.(new TornRecordError(path, size - end));
  return end;
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

interface RecordFile {
  name: string;
  day: string;
  seq: number;
}

export async function listRecordFiles(dir: string): Promise<RecordFile[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  return names
    .map((name) => {
      const m = FILE_PATTERN.exec(name);
      return m ? { name, day: m[1]!, seq: Number(m[2]) } : null;
    })
    .filter((f): f is RecordFile => f !== null)
    .sort((a, b) => (a.day === b.day ? a.seq - b.seq : a.day < b.day ? -1 : 1));
}

/**
 * Deletes the oldest files until the others and a full file being written fit in the total: the
 * directory never grows past `maxTotalBytes`. The file being written is kept.
 */
async function enforceTotal(dir: string, maxTotalBytes: number, maxFileBytes: number, keep: string): Promise<void> {
  const files = await Promise.all(
    (await listRecordFiles(dir)).filter((f) => f.name !== keep).map(async (f) => ({ ...f, size: (await stat(join(dir, f.name))).size })),
  );
  let others = files.reduce((sum, f) => sum + f.size, 0);
  for (const f of files) {
    if (others + maxFileBytes <= maxTotalBytes) break;
    await unlink(join(dir, f.name));
    others -= f.size;
  }
}

function fileName(day: string, seq: number): string {
  return `callprobe-${day}-${String(seq).padStart(4, '0')}.jsonl`;
}

function utcDay(d: Date): string {
  return d.toISOString().slice(0, 10).replaceAll('-', '');
}

export interface ReadOptions {
  /** Only results that started at or after this time. */
  since?: Date;
  /** At most this many, the newest ones. */
  limit: number;
  /**
   * At most this many bytes are read per call, newest first, so a request can never make the
   * daemon read its whole records directory.
   */
  maxScanBytes?: number;
}

const READ_CHUNK = 64 * 1024;
const DEFAULT_MAX_SCAN = 32 * 1024 * 1024;

/**
 * Reads results back, newest last. A torn line (a crash mid-write) or any line that does not
 * parse is skipped, never fatal. Files are read backwards from the newest in 64 KiB chunks, each
 * an asynchronous read, so the event loop (probes, /healthz) runs between chunks; reading stops
 * at `limit` results or `maxScanBytes`.
 */
export async function readRecords(dir: string, { since, limit, maxScanBytes = DEFAULT_MAX_SCAN }: ReadOptions): Promise<ProbeResult[]> {
  const out: ProbeResult[] = [];
  let budget = maxScanBytes;
  for (const f of (await listRecordFiles(dir)).reverse()) {
    if (out.length >= limit || budget <= 0) break;
    if (since && f.day < utcDay(since)) break;
    budget -= await readFileBackwards(join(dir, f.name), budget, (line) => {
      let result: ProbeResult;
      try {
        result = JSON.parse(line) as ProbeResult;
      } catch {
        return true;
      }
      if (!since || Date.parse(result.startedAt) >= since.getTime()) out.push(result);
      return out.length < limit;
    });
  }
  return out.reverse();
}

/**
 * Every result that started at or after `since`, newest first (in file order, read backwards), to
 * `onResult`: what the status page's history is built from at startup. The same reading as
 * readRecords (64 KiB asynchronous chunks, lines that do not parse skipped) without its limits:
 * the directory is bounded by records.maxTotalBytes. Returns the bytes read.
 */
export async function scanRecords(dir: string, since: Date, onResult: (result: ProbeResult) => void): Promise<number> {
  let bytes = 0;
  for (const f of (await listRecordFiles(dir)).reverse()) {
    if (f.day < utcDay(since)) break;
    bytes += await readFileBackwards(join(dir, f.name), Infinity, (line) => {
      let result: ProbeResult;
      try {
        result = JSON.parse(line) as ProbeResult;
      } catch {
        return true;
      }
      if (Date.parse(result.startedAt) >= since.getTime()) onResult(result);
      return true;
    });
  }
  return bytes;
}

/** Calls `onLine` for each complete line, last line first; stops when it returns false. Returns bytes read. */
async function readFileBackwards(file: string, maxBytes: number, onLine: (line: string) => boolean): Promise<number> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch {
    return 0;
  }
  try {
    let position = (await handle.stat()).size;
    // The end of a line whose start is in a chunk not read yet, in pieces in file order.
    let tail: Buffer[] = [];
    let read = 0;
    while (position > 0 && read < maxBytes) {
      const length = Math.min(READ_CHUNK, position, maxBytes - read);
      position -= length;
      const chunk = Buffer.alloc(length);
      await handle.read(chunk, 0, length, position);
      read += length;
      let end = length;
      for (let i = length - 1; i >= 0; i--) {
        if (chunk[i] !== 0x0a) continue;
        const line = tail.length === 0 ? chunk.subarray(i + 1, end) : Buffer.concat([chunk.subarray(i + 1, end), ...tail]);
        tail = [];
        if (line.length > 0 && !onLine(line.toString('utf8'))) return read;
        end = i;
      }
      if (end > 0) tail.unshift(chunk.subarray(0, end));
    }
    if (position === 0 && tail.length > 0) onLine(Buffer.concat(tail).toString('utf8'));
    return read;
  } finally {
    await handle.close();
  }
}
