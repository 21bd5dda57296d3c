/**
 * `npm run bench:policy`: policy evaluation figures, printed as one JSON object.
 *  - inProcess: per entrypoint, p50/p99 of one Wasm evaluation (targets p50 ≤ 20 µs, p99 ≤ 100 µs)
 *  - ruleScaling: an ACL looked up by key with 10 … 10,000 entries (target: 10,000 ≤ 2× 10)
 *  - http: our POST /v1/data/... against `opa run --server` with the same Rego and data,
 *    same input, same load generator (autocannon), in this run (target ≥ 1.5× OPA's rate,
 *    p99 no worse).
 * Everything runs on 127.0.0.1 only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import pino from 'pino';
import { packageRoot } from '../src/lib/package-root.js';
import { activateFromFile, createPolicyEngine, opaBinary, type PolicyEngine, REQUIRED_ENTRYPOINTS } from '../src/policy/index.js';
import { buildCustomBundle, ensureBundle } from '../test/helpers/bundle.js';
import { tempDir, TEST_ADMIN_TOKEN } from '../test/helpers/config.js';
import { SEED_WORKER } from '../test/helpers/fixtures.js';
import { GENERATORS, seeded } from '../test/helpers/inputs/index.js';
import { createTestDatabase } from '../test/helpers/postgres.js';
import { startGatewayProcess } from '../test/helpers/gateway.js';

const logger = pino({ level: 'silent' });

function percentiles(samples: number[]): { p50: number; p90: number; p99: number; max: number } {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  const round = (v: number) => Math.round(v * 100) / 100;
  return { p50: round(at(0.5)), p90: round(at(0.9)), p99: round(at(0.99)), max: round(s[s.length - 1]!) };
}

/** Times `n` evaluations one by one (µs), after a warm-up. */
function timeEvaluations(engine: PolicyEngine, entrypoint: string, inputs: unknown[], n: number): number[] {
  const evaluate = (input: unknown) => {
    try {
      engine.evaluate(entrypoint, input);
    } catch {
      // an undefined result is timed like any other
    }
  };
  for (let i = 0; i < 5_000; i++) evaluate(inputs[i % inputs.length]);
  const samples = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const input = inputs[i % inputs.length];
    const t0 = process.hrtime.bigint();
    evaluate(input);
    samples[i] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  return samples;
}

async function inProcess(): Promise<Record<string, unknown>> {
  const engine = createPolicyEngine({ logger, required: REQUIRED_ENTRYPOINTS });
  await activateFromFile(engine, await ensureBundle());
  const out: Record<string, unknown> = {};
  for (const entrypoint of REQUIRED_ENTRYPOINTS) {
    const r = seeded(42);
    const inputs = Array.from({ length: 2_000 }, () => GENERATORS[entrypoint](r));
    const started = process.hrtime.bigint();
    const samples = timeEvaluations(engine, entrypoint, inputs, 50_000);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const p = percentiles(samples);
    out[entrypoint] = {
      unit: 'µs',
      evaluations: samples.length,
      ...p,
      evalsPerSecond: Math.round(samples.length / seconds),
      meetsTarget: p.p50 <= 20 && p.p99 <= 100,
    };
  }
  return out;
}

// A register-shaped policy whose node ACL and label allowlist hold N entries, looked up by key.
const aclRego = [
  'package cynode.register',
  '',
  'import data.config.register.acl',
  '',
  'decision := {"allow": count(deny) == 0, "reasons": sort(deny)}',
  '',
  'has_node if is_string(input.subject.node_id)',
  '',
  'deny contains "context_missing" if not has_node',
  '',
  'deny contains "node_not_allowed" if not acl.nodes[input.subject.node_id]',
  '',
  'deny contains "label_not_allowed" if {',
  '\tsome label in input.subject.labels',
  '\tnot acl.labels[label]',
  '}',
  '',
].join('\n');

async function ruleScaling(): Promise<Record<string, unknown>> {
  const results: Record<string, { p50: number; p99: number }> = {};
  for (const n of [10, 100, 1_000, 10_000]) {
    const nodes = Object.fromEntries(Array.from({ length: n }, (_, i) => [`node-${i}`, true]));
    const labels = Object.fromEntries(Array.from({ length: n }, (_, i) => [`label-${i}`, true]));
    const bundle = await buildCustomBundle(
      { 'cynode/register/r.rego': aclRego, 'config/register/acl/data.json': JSON.stringify({ nodes, labels }) },
      { revision: `acl-${n}` },
    );
    const engine = createPolicyEngine({ logger, required: REQUIRED_ENTRYPOINTS });
    await activateFromFile(engine, bundle);
    const r = seeded(7);
    const inputs = Array.from({ length: 1_000 }, () => ({
      subject: { node_id: `node-${r.int(n * 2)}`, labels: [`label-${r.int(n)}`, `label-${r.int(n * 2)}`] },
    }));
    const p = percentiles(timeEvaluations(engine, 'cynode/register/decision', inputs, 30_000));
    results[String(n)] = { p50: p.p50, p99: p.p99 };
  }
  const ratio = Math.round((results['10000']!.p50 / results['10']!.p50) * 100) / 100;
  return { unit: 'µs', entries: results, p50Ratio10000to10: ratio, meetsTarget: ratio <= 2 };
}

function autocannonRun(url: string, headers: Record<string, string>, body: string): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    autocannon(
      { url, method: 'POST', connections: 50, duration: 10, headers: { 'content-type': 'application/json', ...headers }, body },
      (err, result) => (err ? reject(err) : resolve(result)),
    );
  });
}

function summary(r: autocannon.Result): Record<string, number> {
  return {
    requestsPerSecond: Math.round(r.requests.average),
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    non2xx: r.non2xx,
    errors: r.errors,
  };
}

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function http(): Promise<Record<string, unknown>> {
  const body = JSON.stringify({ input: { action: 'register', subject: SEED_WORKER, resource: {}, context: {} } });
  const path = '/v1/data/cynode/register/decision';
  const db = await createTestDatabase();
  let opa: ChildProcess | undefined;
  let ours: Awaited<ReturnType<typeof startGatewayProcess>> | undefined;
  try {
    const port = await freePort();
    // OPA evaluates the same Rego and data with its own engine (the policies folder as a bundle).
    opa = spawn(
      opaBinary(),
      [
        'run',
        '--server',
        '--addr',
        `127.0.0.1:${port}`,
        '--log-level',
        'error',
        '-b',
        join(packageRoot(), 'policies'),
        '--ignore',
        '*_test.rego',
      ],
      { stdio: 'ignore' },
    );
    const opaUrl = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 100; i++) {
      if ((await fetch(`${opaUrl}/health`).catch(() => undefined))?.ok) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    ours = await startGatewayProcess({ DATABASE_URL: db.url, CYNODE_BUNDLE: await ensureBundle(), CYNODE_DATA_DIR: tempDir() }, [
      '--role',
      'control',
    ]);
    const oursUrl = `http://127.0.0.1:${ours.ports.control}`;
    await autocannonRun(`${opaUrl}${path}`, {}, body); // warm-up both, then measure both
    await autocannonRun(`${oursUrl}${path}`, { authorization: `Bearer ${TEST_ADMIN_TOKEN}` }, body);
    const opaResult = summary(await autocannonRun(`${opaUrl}${path}`, {}, body));
    const ourResult = summary(await autocannonRun(`${oursUrl}${path}`, { authorization: `Bearer ${TEST_ADMIN_TOKEN}` }, body));
    const ratio = Math.round((ourResult.requestsPerSecond! / opaResult.requestsPerSecond!) * 100) / 100;
    return {
      loadGenerator: 'autocannon, 50 connections, 10 s, same body',
      opaServer: opaResult,
      gateway: { ...ourResult, note: 'every decision authenticated and written to the hash-chained decision log in PostgreSQL' },
      throughputRatio: ratio,
      p99Ratio: Math.round((ourResult.p99Ms! / opaResult.p99Ms!) * 100) / 100,
      meetsTarget: ratio >= 1.5 && ourResult.p99Ms! <= opaResult.p99Ms!,
    };
  } finally {
    opa?.kill('SIGTERM');
    ours?.child.kill('SIGTERM');
    await ours?.exited;
    await db.drop();
  }
}

const report = {
  node: process.version,
  cpus: cpus().length,
  inProcess: await inProcess(),
  ruleScaling: await ruleScaling(),
  http: await http(),
};
console.log(JSON.stringify(report, null, 2));
