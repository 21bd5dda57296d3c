/**
 * What one request costs where: the gateway child runs under Linux `perf` where it works (CPU
 * time only: perf-profile.ts), else under V8's sampling profiler (`--cpu-prof`); BENCH_PROFILER
 * chooses. Each sample is charged to the stage its stack is in. A stage is found
 * from the innermost frame that belongs to a known place (a source file of this repo or a
 * package); frames of Node itself (JSON, crypto, sockets, the garbage collector) are charged
 * to the first known frame above them, so `JSON.parse` inside the body reader is "http" and
 * inside the pg driver is "database".
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { perfWorks, SAMPLE_HZ, startPerf, stopPerf } from './perf-profile.js';

/** One stage and the places whose frames are charged to it (tested in order). */
export interface Stage {
  name: string;
  /** Matches a frame's place: `src/<path>` for this repo, `npm:<package>` for a dependency. */
  match: RegExp;
}

/** The gateway's stages, as the hot-path benchmarks report them. */
export const GATEWAY_STAGES: Stage[] = [
  { name: 'logging', match: /^npm:(pino|pino-std-serializers|sonic-boom|fast-redact|thread-stream)$|^src\/logging\// },
  { name: 'database', match: /^npm:(pg|pg-pool|pg-protocol|pg-types|knex|postgres-\w+)$|^src\/db\// },
  { name: 'policy', match: /^npm:@open-policy-agent\/|^src\/policy\/|^wasm$/ },
  { name: 'token/MAC', match: /^npm:jose$|^src\/keys\/|^src\/final-gate\/forward-token/ },
  { name: 'decision log', match: /^src\/decisions\/|^src\/lib\/(chained-log|hash-chain|canonical-json)/ },
  { name: 'audit', match: /^src\/(egress|mcp|workers)\/audit/ },
  { name: 'auth', match: /^src\/(auth|workers\/auth|workers\/tokens|lib\/bearer)/ },
  { name: 'input build', match: /^src\/(egress\/(input|admission|pricing)\.ts|mcp\/policy-input\.ts|preferences\/)/ },
  { name: 'provider call', match: /^src\/egress\/(providers|provider-call)|^src\/lib\/http-client|^src\/mcp\/upstreams/ },
  { name: 'validation', match: /^npm:ajv|^src\/server\/validate/ },
  { name: 'http', match: /^npm:(koa|koa-compose|@koa\/router|raw-body|co-body|iconv-lite|statuses|http-errors)$|^src\/server\// },
  { name: 'metrics', match: /^npm:prom-client$|\/metrics\.ts$/ },
  { name: 'gateway logic', match: /^src\// },
  { name: 'other packages', match: /^npm:/ },
];

/**
 * The profiler of this run: BENCH_PROFILER (`perf` or `v8`), else `perf` where the machine has a
 * working `perf` (it counts CPU time only), else V8's.
 */
export function profiler(): 'perf' | 'v8' {
  const chosen = process.env.BENCH_PROFILER;
  if (chosen === 'perf' || chosen === 'v8') return chosen;
  return perfWorks() ? 'perf' : 'v8';
}

/**
 * Node arguments for a child that is profiled into `dir` (emptied first). Under `perf` the
 * machine's `perf` samples CPU time system-wide from now until `stageBreakdown`, and the child
 * only publishes its JIT symbols; otherwise the child writes a V8 CPU profile when it exits
 * (SIGTERM is fine).
 */
export function profileArgs(dir: string): string[] {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  if (profiler() === 'perf') {
    startPerf(dir);
    // The symbol map goes to /tmp/perf-<pid>.map, where perf looks; the log V8 keeps with it stays here.
    return ['--perf-basic-prof', '--interpreted-frames-native-stack', '--no-logfile-per-isolate', `--logfile=${join(dir, 'v8.log')}`];
  }
  return ['--cpu-prof', `--cpu-prof-dir=${dir}`];
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Where a frame belongs: `src/...`, `npm:<package>`, or undefined for Node's own and native frames. */
function placeOf(url: string): string | undefined {
  if (!url) return undefined;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg) return `npm:${pkg[1]}`;
  // The compiled build (dist/src/x.js) is charged as its source (src/x.ts).
  const src = /\/(src\/[^:]*?)(?:\.js)?(?::\d+:\d+)?$/.exec(url);
  return src ? `${src[1]}.ts`.replace(/\.(ts|mjs|cjs)\.ts$/, '.$1') : undefined;
}

/**
 * Sampled CPU by stage from the largest profile in `dir` (the gateway's), in ms and as a share,
 * and per request when `requests` is given. Samples outside any known place (idle, the event
 * loop, GC at the top) are "node internals".
 */
export function stageBreakdown(dir: string, requests?: number, stages: Stage[] = GATEWAY_STAGES) {
  if (profiler() === 'perf') return perfBreakdown(requests, stages);
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(dir, f));
  if (files.length === 0) return { error: `no CPU profile in ${dir}` };
  const file = files.sort((a, b) => statSync(b).size - statSync(a).size)[0]!;
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const parent = new Map<number, ProfileNode>();
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n);
  const stageOf = new Map<number, string>();
  const resolve = (node: ProfileNode): string => {
    const known = stageOf.get(node.id);
    if (known) return known;
    const place = placeOf(node.callFrame.url);
    const name = node.callFrame.functionName;
    let stage: string;
    if (name === '(idle)' || name === '(program)') stage = name;
    else if (place) stage = stages.find((s) => s.match.test(place))?.name ?? 'other';
    else {
      const up = parent.get(node.id);
      stage = up ? resolve(up) : 'node internals';
      if (stage === '(root)') stage = name === '(garbage collector)' ? 'garbage collector' : 'node internals';
    }
    if (name === '(root)') stage = '(root)';
    stageOf.set(node.id, stage);
    return stage;
  };
  const us = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const stage = resolve(byId.get(id)!);
    us.set(stage, (us.get(stage) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  us.delete('(idle)');
  us.delete('(root)');
  return summary(us, requests, { profiler: 'v8 (wall time while not idle)' });
}

/** Stage -> [ms, share, ms per request], largest first: one line per stage in the report. */
function summary(us: Map<string, number>, requests: number | undefined, extra: Record<string, unknown> = {}) {
  const busy = [...us.values()].reduce((a, b) => a + b, 0);
  const round = (x: number) => Math.round(x * 1000) / 1000;
  const stagesOut = Object.fromEntries(
    [...us.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([stage, t]) => [
        stage,
        [round(t / 1000), Math.round((t / busy) * 1000) / 1000, ...(requests ? [round(t / 1000 / requests)] : [])],
      ]),
  );
  return {
    sampledBusyMs: round(busy / 1000),
    ...extra,
    columns: ['ms', 'share', ...(requests ? ['msPerRequest'] : [])],
    stages: stagesOut,
  };
}

/**
 * CPU by stage from `perf` (BENCH_PROFILER=perf), of the gateway process with the most samples:
 * each sample is charged to the innermost frame of a known place, like a V8 sample; a stack with
 * none is the garbage collector's or "node internals". `kernelShare` is the part spent in the kernel.
 */
function perfBreakdown(requests: number | undefined, stages: Stage[]) {
  const byPid = stopPerf();
  const samples = [...byPid.values()].sort((a, b) => b.length - a.length)[0];
  if (!samples) return { error: 'perf recorded no samples of a gateway (is perf installed and allowed: perf_event_paranoid?)' };
  const us = new Map<string, number>();
  const perSampleUs = 1e6 / SAMPLE_HZ;
  let kernel = 0;
  for (const { frames, kernel: inKernel, main } of samples) {
    if (inKernel) kernel++;
    let stage: string | undefined = main ? undefined : 'helper threads (JIT compilers, concurrent GC, libuv pool)';
    for (const f of stage ? [] : frames) {
      const place = perfPlaceOf(f);
      if (place) {
        stage = stages.find((s) => s.match.test(place))?.name ?? 'other';
        break;
      }
    }
    // No frame of this repo or a package: Node's own JavaScript says what it was for, if any.
    stage ??= frames.some(isGcFrame) ? 'garbage collector' : nodeStage(frames);
    us.set(stage, (us.get(stage) ?? 0) + perSampleUs);
  }
  return summary(us, requests, { profiler: 'perf (CPU time)', kernelShare: Math.round((kernel / samples.length) * 1000) / 1000 });
}

/** The place of a perf frame: as `placeOf` for a JavaScript one, `wasm` for the policy's code, undefined for native ones. */
function perfPlaceOf(frame: string): string | undefined {
  if (!frame.startsWith('JS:')) return undefined;
  // WebAssembly functions are named `<name>-<index>-<tier>`; the only Wasm here is the policy.
  if (/-\d+-(liftoff|turbofan)$/.test(frame)) return 'wasm';
  return placeOf(frame.split(' ').slice(1).join(' '));
}

/** Whether a native frame is the garbage collector's. */
const isGcFrame = (frame: string) => /Scavenge|MarkCompact|Heap::|ConcurrentMarking|Sweeper|MinorMS/.test(frame);

/** A stack with no frame of this repo or a package, by the first of Node's own modules on it. */
function nodeStage(frames: string[]): string {
  for (const f of frames) {
    const mod = / node:([\w/]+)/.exec(f)?.[1];
    if (!mod) continue;
    if (/^(_http_|internal\/http|http)/.test(mod)) return 'node http';
    if (/^(net|internal\/stream_base_commons|internal\/streams\/)/.test(mod)) return 'node sockets and streams';
    if (/^internal\/process\/task_queues|^internal\/timers|^timers/.test(mod)) return 'node event loop';
    return 'node internals';
  }
  return 'node internals';
}
