import { mkdirSync } from 'node:fs';
import { open, readdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { ProbeResult } from '../result.js';

export interface RecordsOptions {
  dir: string;
  maxFileBytes: number;
  /** The whole directory, the file being written included. */
  maxTotalBytes: number;
  /** Results waiting to be written; past this they are dropped and counted, never blocking probes. */
  queueLength: number;
  onDrop?(count: number): void;
  onError?(err: unknown): void;
  now?: () => Date;
}

const FILE_PATTERN = /^callprobe-(\d{8})-(\d{4})\.jsonl$/;
const BATCH_BYTES = 256 * 1024;

/**
 * One JSON line per ProbeResult under `dir`, in files rotated by size and by UTC day, the total
 * capped by deleting the oldest files first: months unattended never fill a disk. Writes are
 * queued and appended in batches; a slow disk costs queued results (counted), never a probe.
 */
export class RecordWriter {
  private queue: string[] = [];
  private handle: FileHandle | null = null;
  private current: { name: string; day: string; bytes: number } | null = null;
  private writing: Promise<void> | null = null;
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

  /** Resolves when everything queued so far is on disk. */
  async flush(): Promise<void> {
    while (this.writing || this.queue.length > 0) {
      this.kick();
      await this.writing;
    }
  }

  async close(): Promise<void> {
    await this.flush();
    await this.handle?.close();
    this.handle = null;
    this.current = null;
  }

  private kick(): void {
    if (this.writing || this.queue.length === 0) return;
    this.writing = this.drain()
      .catch((err) => this.options.onError?.(err))
      .finally(() => {
        this.writing = null;
        if (this.queue.length > 0) this.kick();
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
    }
  }

  private async ensureFile(incoming: number): Promise<void> {
    const day = utcDay(this.now());
    const c = this.current;
    if (c && c.day === day && (c.bytes === 0 || c.bytes + incoming <= this.options.maxFileBytes)) return;
    await this.handle?.close();
    const name = await this.nextName(day);
    this.handle = await open(join(this.options.dir, name), 'a+', 0o640);
    const size = (await this.handle.stat()).size;
    this.current = { name, day, bytes: size };
    // After a crash the last line may be torn: end it, so the next record starts on a line of its own.
    if (size > 0) {
      const last = Buffer.alloc(1);
      await this.handle.read(last, 0, 1, size - 1);
      if (last[0] !== 0x0a) {
        await this.handle.appendFile('\n');
        this.current.bytes += 1;
      }
    }
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
