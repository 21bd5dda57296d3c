/**
 * Generates config/opa-capabilities.json: the pinned OPA's own capabilities, with the
 * builtin list cut down to what this gateway can evaluate exactly as OPA would. Each builtin
 * is compiled alone with `opa build -t wasm`; it is kept when the module needs no host
 * builtin outside HOST_BUILTINS (src/policy/builtins.ts), and dropped when it does (e.g.
 * sprintf, regex.split, whose SDK versions differ from Go's), when the Wasm target cannot
 * compile it, or when it is listed in EXCLUDED below. `opa build --capabilities` then fails a
 * policy that uses a dropped builtin at build time, with OPA's own error.
 *
 * Run: node --import tsx scripts/gen-capabilities.ts   (deterministic: a re-run changes nothing)
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadPolicy } from '@open-policy-agent/opa-wasm';
import { HOST_BUILTINS, hostBuiltinsOf } from '../src/policy/builtins.js';
import { packageRoot } from '../src/lib/package-root.js';
import { opaBinary } from '../src/policy/toolchain.js';
import { readTarGz } from '../src/policy/tar.js';

const run = promisify(execFile);

/**
 * Builtins refused even where Wasm has them: decisions must depend only on the input and the
 * bundle (the gateway puts time, spend and load into input.context), so nothing that reads
 * the clock, randomness, the network or the runtime environment.
 */
const EXCLUDED: Record<string, string> = {
  'time.now_ns': 'reads the clock; use input.context.time',
  'rand.intn': 'random',
  'uuid.rfc4122': 'random',
  'http.send': 'network',
  'net.lookup_ip_addr': 'network (DNS)',
  'opa.runtime': 'runtime environment',
  trace: 'debugging output',
  print: 'debugging output',
};

interface Decl {
  name: string;
  infix?: string;
  decl?: { args?: unknown[]; result?: unknown };
}

async function probe(b: Decl, work: string): Promise<{ keep: boolean; why: string }> {
  if (EXCLUDED[b.name]) return { keep: false, why: EXCLUDED[b.name]! };
  if (b.name.startsWith('internal.')) return { keep: true, why: 'compiler internal' };
  // Operators (`:=`, `=`, `+`, ...) cannot be called by name; the Wasm compiler emits them natively.
  if (b.infix) return { keep: true, why: 'operator' };
  const dir = mkdtempSync(join(work, 'b-'));
  const args = (b.decl?.args ?? []).map((_, i) => `input.a${i}`).join(', ');
  mkdirSync(join(dir, 'p'));
  writeFileSync(join(dir, 'p', 'p.rego'), `package p\n\nx := ${b.name}(${args})\n`);
  try {
    await run(opaBinary(), ['build', '-t', 'wasm', '-e', 'p/x', '-o', join(dir, 'b.tar.gz'), join(dir, 'p')]);
  } catch {
    return { keep: false, why: 'not compilable to Wasm' };
  }
  const wasm = readTarGz(readFileSync(join(dir, 'b.tar.gz')), 64 << 20).find((e) => e.path === 'policy.wasm')!.data;
  const host = hostBuiltinsOf(await loadPolicy(wasm)).filter((n) => !HOST_BUILTINS.has(n));
  rmSync(dir, { recursive: true, force: true });
  return host.length === 0 ? { keep: true, why: 'evaluated in Wasm' } : { keep: false, why: `needs host ${host.join(', ')}` };
}

async function main(): Promise<void> {
  const { stdout } = await run(opaBinary(), ['capabilities', '--current'], { maxBuffer: 64 << 20 });
  const caps = JSON.parse(stdout) as { builtins: Decl[] } & Record<string, unknown>;
  const work = mkdtempSync(join(tmpdir(), 'cynode-caps-'));
  const verdicts = new Map<string, { keep: boolean; why: string }>();
  const queue = [...caps.builtins];
  await Promise.all(
    [0, 1].map(async () => {
      for (let b = queue.shift(); b; b = queue.shift()) verdicts.set(b.name, await probe(b, work));
    }),
  );
  rmSync(work, { recursive: true, force: true });
  caps.builtins = caps.builtins.filter((b) => verdicts.get(b.name)!.keep).sort((a, b) => (a.name < b.name ? -1 : 1));
  const out = join(packageRoot(), 'config', 'opa-capabilities.json');
  writeFileSync(out, JSON.stringify(caps, null, 2) + '\n');
  const dropped = [...verdicts].filter(([, v]) => !v.keep).sort(([a], [b]) => (a < b ? -1 : 1));
  console.log(`kept ${caps.builtins.length} builtins, dropped ${dropped.length}:`);
  for (const [name, v] of dropped) console.log(`  ${name}: ${v.why}`);
}

await main();
