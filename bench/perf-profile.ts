/**
 * The CPU-time profiler of the benchmarks (the default where it works; BENCH_PROFILER=perf): Linux `perf` samples what is on a
 * CPU, system-wide, and the gateway publishes its JIT symbols (`--perf-basic-prof`), so each sample
 * of the gateway's process is a native stack with its JavaScript and WebAssembly frames named.
 * V8's own profiler samples wall time while the thread is not idle: a thread that waits for a CPU
 * (a socket write that wakes PostgreSQL on the same core, say) is charged to the frame it waits
 * in, which is not CPU the gateway spent. Here only CPU time is counted, kernel time included,
 * each sample charged to the first frame of a known place from the leaf up, as in profile.ts.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';

/** Samples per second of CPU time. */
export const SAMPLE_HZ = 499;
let recording: { child: ChildProcess; file: string; startedMs: number } | undefined;

let works: boolean | undefined;

/** Whether `perf` is installed and may sample every CPU here (a short recording of `true`). */
export function perfWorks(): boolean {
  works ??=
    spawnSync('perf', ['record', '-q', '-e', 'cpu-clock', '-a', '-o', '/dev/null', 'true'], { stdio: 'ignore', timeout: 10_000 }).status ===
    0;
  return works;
}

/** Starts `perf record` system-wide into `dir`, until `stopPerf`. */
export function startPerf(dir: string): void {
  if (recording) throw new Error('perf is recording already');
  const file = join(dir, 'perf.data');
  const child = spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-F', String(SAMPLE_HZ), '-a', '-g', '-o', file], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  recording = { child, file, startedMs: Date.now() };
  // A run that needs no breakdown (every target met) must not leave perf recording behind it.
  process.once('exit', () => child.kill('SIGINT'));
}

/** Whether the process `pid` is gone (or a zombie nobody has reaped yet). */
function exited(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.startsWith('Z') ?? true;
  } catch {
    return true;
  }
}

const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** One sample: its stack's frame names, leaf first, whether it was taken in the kernel, and on the main thread. */
export interface PerfSample {
  frames: string[];
  kernel: boolean;
  /** False on V8's and libuv's helper threads (compilers, concurrent GC, the thread pool). */
  main: boolean;
}

/**
 * Stops the recording and reads it: per process that published JIT symbols since it started (a
 * gateway), its samples. Synchronous, as the report is built.
 */
export function stopPerf(): Map<number, PerfSample[]> {
  if (!recording) throw new Error('perf is not recording');
  const { child, file, startedMs } = recording;
  recording = undefined;
  child.kill('SIGINT');
  for (let waited = 0; !exited(child.pid!) && waited < 60_000; waited += 50) sleep(50);
  const pids = new Set(
    readdirSync('/tmp')
      .map((f) => /^perf-(\d+)\.map$/.exec(f))
      .filter((m): m is RegExpExecArray => m !== null && statSync(join('/tmp', m[0])).mtimeMs >= startedMs - 1000)
      .map((m) => Number(m[1])),
  );
  const bySample = new Map<number, PerfSample[]>();
  if (!existsSync(file) || pids.size === 0) return bySample;
  // A long run's script is gigabytes: it goes to a file, read back a chunk at a time, and each
  // frame name is kept once however many samples share it.
  const text = `${file}.txt`;
  const fd = openSync(text, 'w');
  try {
    spawnSync('perf', ['script', '-i', file, '-F', 'pid,tid,ip,sym,dso'], { stdio: ['ignore', fd, 'ignore'] });
  } finally {
    closeSync(fd);
  }
  const names = new Map<string, string>();
  let current: PerfSample | undefined;
  for (const line of linesOf(text)) {
    if (line === '') {
      current = undefined;
      continue;
    }
    // A sample starts with "pid/tid", right-aligned; its frames follow, one a line.
    const head = /^\s*(\d+)\/(\d+)\s*$/.exec(line);
    if (head) {
      const pid = Number(head[1]);
      const tid = Number(head[2]);
      current = undefined;
      if (pids.has(pid)) {
        current = { frames: [], kernel: false, main: tid === pid };
        const list = bySample.get(pid) ?? [];
        list.push(current);
        bySample.set(pid, list);
      }
      continue;
    }
    // "\t ffffffff8123 name ([kernel.kallsyms])" or "\t 7f12 JS:*fn file:///...:1:2 (/tmp/perf-1.map)"
    if (!current) continue;
    const frame = /^\s*[0-9a-f]+\s+(.*?)\s+\(([^()]*)\)$/.exec(line);
    if (!frame) continue;
    if (current.frames.length === 0) current.kernel = frame[2] === '[kernel.kallsyms]';
    const name = frame[1]!;
    let kept = names.get(name);
    if (kept === undefined) names.set(name, (kept = name));
    current.frames.push(kept);
  }
  rmSync(text, { force: true });
  // The symbol maps were for this reading only (each is about a megabyte).
  for (const pid of pids) rmSync(`/tmp/perf-${pid}.map`, { force: true });
  return bySample;
}

/** The lines of a file, read a megabyte at a time. */
function* linesOf(path: string): Generator<string> {
  const fd = openSync(path, 'r');
  try {
    const chunk = Buffer.alloc(1 << 20);
    const utf8 = new StringDecoder('utf8'); // a character split between chunks stays whole
    let rest = '';
    for (let n = readSync(fd, chunk); n > 0; n = readSync(fd, chunk)) {
      const lines = (rest + utf8.write(chunk.subarray(0, n))).split('\n');
      rest = lines.pop()!;
      yield* lines;
    }
    if (rest !== '') yield rest;
  } finally {
    closeSync(fd);
  }
}
