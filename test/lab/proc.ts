import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Processes inside a network namespace. `ip netns exec NS cmd` enters the namespace and then
 * exec()s cmd (ip/ipnetns.c), so the PID we get back is the command's own PID: we can kill it
 * directly. Each process is started in its own process group (detached) so that anything it
 * forks goes down with it.
 */

export interface SpawnOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Written to stdin, which is then closed. Without it stdin is /dev/null. */
  input?: string | Buffer;
  /** Keep every byte of stdout/stderr (for short commands) instead of only the last lines. */
  captureAll?: boolean;
  /** How many recent output lines to keep for failure messages. */
  ringLines?: number;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RunResult extends ExitStatus {
  stdout: string;
  stderr: string;
  timedOut: boolean;
  durationMs: number;
}

/** Full captures are for short commands; a runaway one must not eat the test's memory. */
const MAX_CAPTURE_BYTES = 16 * 1024 * 1024;
const MAX_LINE_CHARS = 4000;

/** The last N lines of a process's stdout and stderr, tagged, for failure messages. */
export class OutputRing {
  private readonly lines: string[] = [];
  private readonly partial = { stdout: '', stderr: '' };
  constructor(private readonly capacity = 200) {}

  /** Returns the complete lines this chunk finished. */
  push(stream: 'stdout' | 'stderr', chunk: string): string[] {
    const text = this.partial[stream] + chunk;
    const parts = text.split('\n');
    this.partial[stream] = (parts.pop() ?? '').slice(-MAX_LINE_CHARS);
    const done = parts.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l).slice(0, MAX_LINE_CHARS));
    for (const line of done) this.add(stream, line);
    return done;
  }

  flush(): string[] {
    const done: string[] = [];
    for (const stream of ['stdout', 'stderr'] as const) {
      if (this.partial[stream] !== '') {
        done.push(this.partial[stream]);
        this.add(stream, this.partial[stream]);
        this.partial[stream] = '';
      }
    }
    return done;
  }

  private add(stream: 'stdout' | 'stderr', line: string): void {
    this.lines.push(`${stream === 'stdout' ? '1' : '2'}| ${line}`);
    if (this.lines.length > this.capacity) this.lines.shift();
  }

  text(): string {
    return this.lines.join('\n');
  }
}

type LineListener = (line: string) => void;
/** A substring, a regular expression, or a predicate over one output line. */
export type LinePattern = string | RegExp | ((line: string) => boolean);

/** A process running in a namespace, with its recent output and a promise of its exit. */
export class NsProcess {
  readonly pid: number;
  readonly exited: Promise<ExitStatus>;
  readonly startedAt = Date.now();
  private status: ExitStatus | null = null;
  private readonly ring: OutputRing;
  private readonly seenLines: string[] = [];
  private readonly listeners = new Set<LineListener>();
  private readonly full: { stdout: Buffer[]; stderr: Buffer[]; bytes: number } | null;

  constructor(
    readonly namespace: string,
    readonly command: readonly string[],
    private readonly child: ChildProcess,
    opts: SpawnOptions,
  ) {
    if (child.pid === undefined) throw new Error(`could not start ${command.join(' ')} in ${namespace}`);
    this.pid = child.pid;
    this.ring = new OutputRing(opts.ringLines ?? 200);
    this.full = opts.captureAll ? { stdout: [], stderr: [], bytes: 0 } : null;
    for (const stream of ['stdout', 'stderr'] as const) {
      child[stream]?.on('data', (chunk: Buffer) => {
        if (this.full && this.full.bytes < MAX_CAPTURE_BYTES) {
          this.full[stream].push(chunk);
          this.full.bytes += chunk.length;
        }
        this.emitLines(this.ring.push(stream, chunk.toString('utf8')));
      });
    }
    this.exited = new Promise((resolve) => {
      // 'close' waits for stdio to drain, so the output is complete when exit is reported.
      child.on('close', (code, signal) => {
        this.emitLines(this.ring.flush());
        this.status = { code, signal };
        resolve(this.status);
      });
    });
  }

  get running(): boolean {
    return this.status === null;
  }

  get exitStatus(): ExitStatus | null {
    return this.status;
  }

  /** The last lines of output, stdout lines tagged `1|`, stderr `2|`. */
  get output(): string {
    return this.ring.text();
  }

  get stdout(): string {
    return this.full ? Buffer.concat(this.full.stdout).toString('utf8') : '';
  }

  get stderr(): string {
    return this.full ? Buffer.concat(this.full.stderr).toString('utf8') : '';
  }

  /** Every complete line seen so far (stdout and stderr), oldest first, bounded like the ring. */
  get lines(): readonly string[] {
    return this.seenLines;
  }

  onLine(listener: LineListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves with the first line (already seen or future) that matches; rejects on exit or timeout. */
  waitForLine(pattern: LinePattern, timeoutMs = 10_000): Promise<string> {
    const matches = (line: string) =>
      typeof pattern === 'string' ? line.includes(pattern) : typeof pattern === 'function' ? pattern(line) : pattern.test(line);
    const label = typeof pattern === 'function' ? 'the expected line' : String(pattern);
    const seen = this.seenLines.find(matches);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const done = (fn: () => void) => {
        clearTimeout(timer);
        off();
        fn();
      };
      const timer = setTimeout(
        () => done(() => reject(new Error(`no line matching ${label} within ${timeoutMs} ms\n${this.describe()}`))),
        timeoutMs,
      );
      const off = this.onLine((line) => {
        if (matches(line)) done(() => resolve(line));
      });
      void this.exited.then(() => {
        // Lines are emitted before exit resolves, so a match would have settled us already.
        done(() => reject(new Error(`process exited before printing ${label}\n${this.describe()}`)));
      });
    });
  }

  /** SIGTERM to the process group, SIGKILL after the grace period; resolves once it is gone. */
  async kill(graceMs = 2000): Promise<ExitStatus> {
    if (this.status) return this.status;
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** For exit handlers: SIGKILL now, no waiting. */
  killSync(): void {
    if (this.status === null) this.signal('SIGKILL');
  }

  private signal(sig: NodeJS.Signals): void {
    if (this.status !== null) return;
    try {
      process.kill(-this.pid, sig); // the whole group: our process and anything it forked
    } catch {
      try {
        process.kill(this.pid, sig);
      } catch {
        // already gone
      }
    }
  }

  /** One paragraph for a failure message: what ran, how it ended, what it said last. */
  describe(): string {
    const st = this.status;
    const state = st === null ? 'running' : st.signal ? `killed by ${st.signal}` : `exited with code ${st.code}`;
    const out = this.output;
    return `[${this.namespace}] pid ${this.pid} ${state}: ${this.command.join(' ')}\n${out === '' ? '(no output)' : out}`;
  }

  private emitLines(lines: string[]): void {
    for (const line of lines) {
      this.seenLines.push(line);
      if (this.seenLines.length > 5000) this.seenLines.shift();
      for (const l of this.listeners) l(line);
    }
  }
}

/** Starts `cmd args` inside namespace `ns`. The caller (normally the Lab) tracks it for teardown. */
export function spawnInNamespace(ns: string, cmd: string, args: readonly string[], opts: SpawnOptions = {}): NsProcess {
  return start(ns, 'ip', ['netns', 'exec', ns, cmd, ...args], [cmd, ...args], opts);
}

/** Starts a command on the host (no namespace), in its own process group like the lab's, to stop by PID. */
export function spawnHost(cmd: string, args: readonly string[], opts: SpawnOptions = {}): NsProcess {
  return start('host', cmd, args, [cmd, ...args], opts);
}

function start(where: string, file: string, argv: readonly string[], shown: readonly string[], opts: SpawnOptions): NsProcess {
  const child = spawn(file, argv, {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    detached: true,
    stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) {
    // spawn itself failed (ENOENT, EAGAIN): the 'error' event carries why.
    child.on('error', () => {});
    throw new Error(`could not start ${shown.join(' ')}${where === 'host' ? '' : ` in ${where}`}`);
  }
  const proc = new NsProcess(where, shown, child, opts);
  if (opts.input !== undefined) child.stdin?.end(opts.input);
  return proc;
}

/** Runs a command to completion (or until timeoutMs, then kills it) and returns its output. */
export async function runProcess(proc: NsProcess, timeoutMs: number): Promise<RunResult> {
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void proc.kill(500);
  }, timeoutMs);
  const status = await proc.exited;
  clearTimeout(timer);
  return { ...status, stdout: proc.stdout, stderr: proc.stderr, timedOut, durationMs: Date.now() - proc.startedAt };
}

export type Proto = 'tcp' | 'udp';

export interface ListeningSocket {
  address: string;
  port: number;
}

/** Sockets listening in a namespace, from `ss -ltnH` / `-lunH` run inside it. */
export async function listeningSockets(ns: string, proto: Proto): Promise<ListeningSocket[]> {
  const proc = spawnInNamespace(ns, 'ss', [proto === 'tcp' ? '-ltnH' : '-lunH'], { captureAll: true });
  const res = await runProcess(proc, 5000);
  if (res.code !== 0) throw new Error(`ss failed in ${ns}: ${res.stderr.trim()}`);
  return parseSsListening(res.stdout);
}

/** Parses the Local Address:Port column (4th) of `ss -l -H` output. */
export function parseSsListening(text: string): ListeningSocket[] {
  const out: ListeningSocket[] = [];
  for (const line of text.split('\n')) {
    const local = line.trim().split(/\s+/)[3];
    if (!local) continue;
    const colon = local.lastIndexOf(':');
    if (colon <= 0) continue;
    const port = Number(local.slice(colon + 1));
    let address = local.slice(0, colon);
    if (address.startsWith('[') && address.endsWith(']')) address = address.slice(1, -1);
    address = address.replace(/%.*$/, ''); // "127.0.0.53%lo": bound to a device
    if (Number.isInteger(port)) out.push({ address, port });
  }
  return out;
}

const WILDCARDS = new Set(['*', '0.0.0.0', '::']);

function listensOn(sock: ListeningSocket, host: string, port: number): boolean {
  return sock.port === port && (sock.address === host || WILDCARDS.has(sock.address) || sock.address === `::ffff:${host}`);
}

export interface WaitForPortOptions {
  /** Fail at once, with its output, if this process exits while we wait. */
  process?: NsProcess;
  intervalMs?: number;
}

/** Polls `ss` in the namespace until something listens on host:port (wildcard binds count). */
export async function waitForPort(
  ns: string,
  host: string,
  port: number,
  proto: Proto = 'tcp',
  timeoutMs = 10_000,
  opts: WaitForPortOptions = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: ListeningSocket[] = [];
  for (;;) {
    last = await listeningSockets(ns, proto);
    if (last.some((s) => listensOn(s, host, port))) return;
    if (opts.process && !opts.process.running) {
      throw new Error(`${proto} ${host}:${port} never opened in ${ns}: the process ended\n${opts.process.describe()}`);
    }
    if (Date.now() >= deadline) {
      const seen = last.map((s) => `${s.address}:${s.port}`).join(', ') || 'none';
      const tail = opts.process ? `\n${opts.process.describe()}` : '';
      throw new Error(`nothing listens on ${proto} ${host}:${port} in ${ns} after ${timeoutMs} ms (listening: ${seen})${tail}`);
    }
    await sleep(opts.intervalMs ?? 50);
  }
}
