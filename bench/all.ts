/**
 * `npm run bench`: every benchmark, one after another, each in its own process, gathered into
 * one JSON report (default `build/bench-report.json`, gitignored) with the facts of the
 * machine it ran on, and a table of every target verdict the benchmarks printed (also on
 * stdout). A benchmark that fails, or whose file is missing, is recorded with its error; the
 * others still run.
 *
 *   npm run bench -- --only replicas,dispatch   # a subset, in the given order
 *   npm run bench -- --quick                    # shorter runs (or BENCH_QUICK=1)
 *   npm run bench -- --out path/to/report.json
 *
 * Quick mode sets the knobs the benchmarks read (BENCH_SECONDS for egress and mcp, BENCH_CALLS for egress-cpu, BENCH_JOBS
 * for dispatch and replicas, BENCH_FLIPS for replicas, BENCH_SOAK_SECONDS for soak); policy has no knob and runs in full.
 * A knob already set in the environment wins. The soak runs at half the api.call knee an earlier benchmark of the same
 * run reported, unless BENCH_SOAK_RATE or BENCH_SOAK_KNEE is set.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, platform, release, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { packageRoot } from '../src/lib/package-root.js';
import type { Verdict } from './lib.js';

/** Every benchmark, in the order they run. */
// Soak last: it runs at half the knee the api.call benchmarks found.
const BENCHES = ['policy', 'dispatch', 'egress', 'egress-cpu', 'mcp', 'replicas', 'fleet', 'soak'] as const;
type Bench = (typeof BENCHES)[number];

const QUICK_ENV: Record<string, string> = {
  BENCH_SECONDS: '3',
  BENCH_JOBS: '1000',
  BENCH_FLIPS: '40',
  BENCH_CALLS: '1000',
  BENCH_SOAK_SECONDS: '60',
};
// A benchmark still running after this long is stopped and recorded as failed; the soak gets
// its own length on top.
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

/** The environment a benchmark runs with: quick-mode knobs not already set, and the soak's knee. */
function benchEnv(bench: Bench): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (quick) for (const [k, v] of Object.entries(QUICK_ENV)) env[k] ??= v;
  if (bench === 'soak' && env.BENCH_SOAK_RATE === undefined && env.BENCH_SOAK_KNEE === undefined) {
    const knee = apiCallKnee();
    if (knee !== undefined) env.BENCH_SOAK_KNEE = String(knee);
  }
  return env;
}

/** How long a benchmark may run before it is stopped: the soak its own length on top of the usual limit. */
function limitMs(bench: Bench, env: NodeJS.ProcessEnv): number {
  return bench === 'soak' ? BENCH_LIMIT_MS + Number(env.BENCH_SOAK_SECONDS ?? 600) * 1000 : BENCH_LIMIT_MS;
}

function run(bench: Bench): Promise<Outcome> {
  const file = join(root, 'bench', `${bench}.ts`);
  if (!existsSync(file)) return Promise.resolve({ ok: false, seconds: 0, error: `${relative(root, file)} not found` });
  const started = performance.now();
  const seconds = () => Math.round(performance.now() - started) / 1000;
  const env = benchEnv(bench);
  const limit = limitMs(bench, env);
  // Its own process group, so a benchmark stopped at its limit takes its gateways with it.
  const child = spawn(process.execPath, ['--import', 'tsx', file], {
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
  const timer = setTimeout(stopGroup, limit);
  return new Promise((done) => {
    child.on('error', (err) => done({ ok: false, seconds: seconds(), error: err.message }));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      process.off('SIGINT', stopGroup);
      const failed = (error: string): Outcome => ({ ok: false, seconds: seconds(), error, stderrTail: stderr.slice(-6000) });
      if (code !== 0)
        return done(
          failed(
            signal
              ? `stopped by ${signal}${signal === 'SIGTERM' ? ` after ${Math.round(limit / 60_000)} min` : ''}`
              : `exited with ${code}`,
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

/** One row of the report's table: a verdict of one benchmark, or why it has none. */
interface Row {
  bench: string;
  path: string;
  measure: string;
  cynode: unknown;
  peer: unknown;
  ratio: unknown;
  target: string;
  verdict: string;
}

/** The `verdicts` array of a benchmark's JSON, or undefined when it has none. */
function verdictsOf(outcome: Outcome): Partial<Verdict>[] | undefined {
  const list = (outcome.result as { verdicts?: unknown } | undefined)?.verdicts;
  return Array.isArray(list) && list.length > 0 ? (list as Partial<Verdict>[]) : undefined;
}

const verdictWord = (met: unknown): string => (met === true ? 'met' : met === false ? 'missed' : 'no met flag');

/** The table rows of one benchmark: one per verdict, or a single row saying why there are none. */
function rowsOf(bench: string, outcome: Outcome): Row[] {
  const none = (verdict: string, measure = ''): Row[] => [
    { bench, path: '', measure, cynode: null, peer: null, ratio: null, target: '', verdict },
  ];
  if (!outcome.ok) return none('error', outcome.error ?? 'failed');
  const list = verdictsOf(outcome);
  if (!list) return none('no verdicts reported');
  return list.map((v) => ({
    bench,
    path: String(v.path ?? ''),
    measure: String(v.measure ?? ''),
    cynode: v.cynode ?? null,
    peer: v.peer ?? null,
    ratio: v.ratio ?? null,
    target: String(v.target ?? ''),
    verdict: verdictWord(v.met),
  }));
}

/** The lowest api.call knee an earlier benchmark of this run reported, in calls/s. */
function apiCallKnee(): number | undefined {
  const knees = Object.values(report.benches)
    .flatMap((o) => verdictsOf(o) ?? [])
    .filter((v) => String(v.path ?? '').startsWith('api.call') && /knee/i.test(String(v.measure ?? '')))
    .map((v) => Number(v.cynode))
    .filter((k) => Number.isFinite(k) && k > 0);
  return knees.length > 0 ? Math.min(...knees) : undefined;
}

/** A cell of the text table: numbers shortened to 3 decimals, nothing as a dash. */
function cell(value: unknown): string {
  if (value === null || value === undefined || value === '') return '–';
  if (typeof value === 'number') return String(Math.round(value * 1000) / 1000);
  return String(value);
}

const COLUMNS: (keyof Row)[] = ['bench', 'path', 'measure', 'cynode', 'peer', 'ratio', 'target', 'verdict'];

/** The rows as a plain-text table, columns padded to their widest cell. */
function textTable(rows: Row[]): string {
  const cells = [COLUMNS.map(String), ...rows.map((r) => COLUMNS.map((c) => cell(r[c])))];
  const widths = COLUMNS.map((_, i) => Math.max(...cells.map((line) => line[i]!.length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => v.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(cells[0]!), line(widths.map((w) => '-'.repeat(w))), ...cells.slice(1).map(line)].join('\n');
}

/** A stage breakdown as bench/profile.ts prints it: stage -> [ms, share, msPerRequest?]. */
interface Breakdown {
  stages: Record<string, number[]>;
}

const isBreakdown = (v: unknown): v is Breakdown =>
  v !== null && typeof v === 'object' && typeof (v as { stages?: unknown }).stages === 'object';

/** Every breakdown in a `cpuByStage` (one, or one per path it profiled), by label. */
function breakdownsOf(label: string, cpuByStage: unknown): [string, Breakdown][] {
  if (isBreakdown(cpuByStage)) return [[label, cpuByStage]];
  if (cpuByStage === null || typeof cpuByStage !== 'object') return [];
  return Object.entries(cpuByStage).flatMap(([k, v]) => (isBreakdown(v) ? [[`${label}.${k}`, v] as [string, Breakdown]] : []));
}

const STAGES_SHOWN = 8;

/** One line per breakdown of a benchmark that missed a target: its largest stages, in ms per request (or ms). */
function stageLines(rows: Row[]): string[] {
  const missed = new Set(rows.filter((r) => r.verdict === 'missed').map((r) => r.bench));
  return [...missed].flatMap((bench) =>
    breakdownsOf(bench, (report.benches[bench]?.result as { cpuByStage?: unknown } | undefined)?.cpuByStage).map(([label, b]) => {
      const perRequest = Object.values(b.stages).every((v) => v.length > 2);
      const shown = Object.entries(b.stages)
        .slice(0, STAGES_SHOWN)
        .map(([stage, v]) => `${stage} ${cell(perRequest ? v[2] : v[0])}`);
      return `  ${label} (${perRequest ? 'ms per request' : 'ms'}): ${shown.join(', ')}`;
    }),
  );
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

/** One line per benchmark: how it ended and how many of its verdicts were met. */
function statusLine(name: string, o: Outcome, rows: Row[]): string {
  if (!o.ok) return `  ${name}: FAILED after ${o.seconds} s: ${o.error}`;
  if (!verdictsOf(o)) return `  ${name}: ok in ${o.seconds} s; no verdicts reported`;
  const missed = rows.filter((r) => r.verdict !== 'met').length;
  return `  ${name}: ok in ${o.seconds} s; verdicts met ${rows.length - missed}/${rows.length}`;
}

const report = {
  generatedAt: new Date().toISOString(),
  machine: machine(),
  quick,
  benches: {} as Record<string, Outcome>,
  table: [] as Row[],
};
for (const bench of selected) {
  console.error(`bench: ${bench} …`);
  report.benches[bench] = await run(bench);
}
report.table = Object.entries(report.benches).flatMap(([name, o]) => rowsOf(name, o));
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);

console.log(`report: ${relative(process.cwd(), out) || out}`);
for (const [name, o] of Object.entries(report.benches)) {
  console.log(
    statusLine(
      name,
      o,
      report.table.filter((r) => r.bench === name),
    ),
  );
  if (o.ok) for (const path of HEADLINES[name as Bench] ?? []) console.log(`    ${path} = ${JSON.stringify(at(o.result, path))}`);
}
console.log(`\n${textTable(report.table)}`);
const stages = stageLines(report.table);
if (stages.length > 0) console.log(['', 'CPU by stage where a target was missed (largest first):', ...stages].join('\n'));
process.exitCode = Object.values(report.benches).every((o) => o.ok) ? 0 : 1;
