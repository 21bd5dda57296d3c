/**
 * `npm run bench`: every benchmark, one after another, each in its own process, gathered into
 * one JSON report (default `build/bench-report.json`, gitignored) with the facts of the
 * machine it ran on. A benchmark that fails is recorded with its error; the others still run.
 *
 *   npm run bench -- --only replicas,dispatch   # a subset, in the given order
 *   npm run bench -- --quick                    # shorter runs (or BENCH_QUICK=1)
 *   npm run bench -- --out path/to/report.json
 *
 * Quick mode sets the knobs the benchmarks read (BENCH_SECONDS for egress and mcp, BENCH_CALLS for egress-cpu, BENCH_JOBS
 * for dispatch and replicas, BENCH_FLIPS for replicas); policy has no knob and runs in full.
 * A knob already set in the environment wins.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, platform, release, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { packageRoot } from '../src/lib/package-root.js';

/** Every benchmark, in the order they run. */
const BENCHES = ['policy', 'dispatch', 'egress', 'egress-cpu', 'mcp', 'replicas'] as const;
type Bench = (typeof BENCHES)[number];

const QUICK_ENV: Record<string, string> = { BENCH_SECONDS: '3', BENCH_JOBS: '1000', BENCH_FLIPS: '40', BENCH_CALLS: '1000' };
// A benchmark still running after this long is stopped and recorded as failed.
const BENCH_LIMIT_MS = 20 * 60_000;

/** What one benchmark left: its JSON, or why there is none. */
interface Outcome {
  ok: boolean;
  seconds: number;
  result?: unknown;
  error?: string;
  /** The end of its stderr when it failed. */
  stderrTail?: string;
}

const { values } = parseArgs({
  options: { only: { type: 'string' }, quick: { type: 'boolean', default: false }, out: { type: 'string' } },
});
const root = packageRoot();
const quick = values.quick || process.env.BENCH_QUICK === '1';
const selected = selection(values.only);
const out = resolve(values.out ?? join(root, 'build', 'bench-report.json'));

function selection(only: string | undefined): Bench[] {
  if (!only) return [...BENCHES];
  const names = only
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = names.filter((n) => !(BENCHES as readonly string[]).includes(n));
  if (unknown.length > 0 || names.length === 0) {
    console.error(`--only takes a comma-separated list of: ${BENCHES.join(', ')} (unknown: ${unknown.join(', ') || 'none given'})`);
    process.exit(2);
  }
  return names as Bench[];
}

function git(...args: string[]): string | null {
  try {
    return execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

function machine() {
  const cores = cpus();
  const status = git('status', '--porcelain');
  return {
    cpus: cores.length,
    cpuModel: cores[0]?.model ?? null,
    memoryGb: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    loadAverageAtStart: loadavg().map((l) => Math.round(l * 100) / 100),
    platform: `${platform()} ${release()}`,
    node: process.version,
    git: { revision: git('rev-parse', 'HEAD'), uncommittedChanges: status === null ? null : status.length > 0 },
  };
}

/** The JSON a benchmark printed: all of stdout, or else the last object that starts a line. */
function parseOutput(stdout: string): unknown {
  const text = stdout.trim();
  try {
    return JSON.parse(text);
  } catch {
    const start = text.lastIndexOf('\n{');
    if (start < 0) throw new Error('no JSON object on stdout');
    return JSON.parse(text.slice(start + 1));
  }
}

function run(bench: Bench): Promise<Outcome> {
  const started = performance.now();
  const seconds = () => Math.round(performance.now() - started) / 1000;
  const env = { ...process.env, ...(quick && Object.fromEntries(Object.entries(QUICK_ENV).filter(([k]) => process.env[k] === undefined))) };
  // Its own process group, so a benchmark stopped at its limit takes its gateways with it.
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'bench', `${bench}.ts`)], {
    cwd: root,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const stopGroup = () => {
    try {
      process.kill(-child.pid!, 'SIGTERM');
    } catch {
      // already gone
    }
  };
  process.once('SIGINT', stopGroup);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  // Keep the end only: a failing benchmark can be chatty.
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr = (stderr + c).slice(-20_000)));
  const limit = setTimeout(stopGroup, BENCH_LIMIT_MS);
  return new Promise((done) => {
    child.on('error', (err) => done({ ok: false, seconds: seconds(), error: err.message }));
    child.on('close', (code, signal) => {
      clearTimeout(limit);
      process.off('SIGINT', stopGroup);
      const failed = (error: string): Outcome => ({ ok: false, seconds: seconds(), error, stderrTail: stderr.slice(-6000) });
      if (code !== 0)
        return done(
          failed(
            signal ? `stopped by ${signal}${signal === 'SIGTERM' ? ` after ${BENCH_LIMIT_MS / 60_000} min` : ''}` : `exited with ${code}`,
          ),
        );
      try {
        done({ ok: true, seconds: seconds(), result: parseOutput(stdout) });
      } catch (err) {
        done(failed(`unreadable output: ${(err as Error).message}`));
      }
    });
  });
}

/** Every boolean target verdict in a result (`met`, `meetsTarget`, `…Met`, or inside `target(s)`), by its path. */
function verdicts(value: unknown, path = '', inTargets = false): [string, boolean][] {
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([k, v]): [string, boolean][] => {
    const at = path ? `${path}.${k}` : k;
    if (typeof v === 'boolean' && (inTargets || k === 'met' || k === 'meetsTarget' || k.endsWith('Met'))) return [[at, v]];
    return verdicts(v, at, inTargets || k === 'target' || k === 'targets');
  });
}

/** The figures the summary line shows per benchmark, by path in its result. */
const HEADLINES: Partial<Record<Bench, string[]>> = {
  dispatch: ['gateway.drain.jobsPerSecond', 'gateway.endToEnd.jobsPerSecond', 'peer.jobsPerSecond'],
  replicas: [
    'killSwitch.untilAllReplicasMs.p99',
    'dispatch.oneReplica.jobsPerSecond',
    'dispatch.threeReplicas.jobsPerSecond',
    'dispatch.ratioThreeToOne',
    'dispatch.jobsLeasedTwice',
  ],
};

function at(value: unknown, path: string): unknown {
  return path
    .split('.')
    .reduce<unknown>((v, k) => (v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), value);
}

const report = {
  generatedAt: new Date().toISOString(),
  machine: machine(),
  quick,
  benches: {} as Record<string, Outcome>,
};
for (const bench of selected) {
  console.error(`bench: ${bench} …`);
  report.benches[bench] = await run(bench);
}
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);

console.log(`report: ${relative(process.cwd(), out) || out}`);
for (const [name, o] of Object.entries(report.benches)) {
  if (!o.ok) {
    console.log(`  ${name}: FAILED after ${o.seconds} s: ${o.error}`);
    continue;
  }
  const v = verdicts(o.result);
  const missed = v.filter(([, met]) => !met).map(([p]) => p);
  const shown = missed.length > 4 ? [...missed.slice(0, 4), `${missed.length - 4} more`] : missed;
  const targets =
    v.length === 0
      ? 'no target verdicts in its output'
      : `targets met ${v.length - missed.length}/${v.length}${missed.length ? ` (missed: ${shown.join(', ')})` : ''}`;
  console.log(`  ${name}: ok in ${o.seconds} s; ${targets}`);
  for (const path of HEADLINES[name as Bench] ?? []) console.log(`    ${path} = ${JSON.stringify(at(o.result, path))}`);
}
process.exitCode = Object.values(report.benches).every((o) => o.ok) ? 0 : 1;
