import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { packageRoot } from '../lib/package-root.js';

/** A failed OPA CLI run; OPA's own output has already been shown to the user. */
export class ToolchainError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = 'ToolchainError';
  }
}

/**
 * The OPA CLI to run: `CYNODE_OPA_BIN` if set, else the pinned build in `.tools/bin`
 * (installed by `npm run tools`), else `opa` on PATH.
 */
export function opaBinary(env: Record<string, string | undefined> = process.env): string {
  if (env.CYNODE_OPA_BIN) return env.CYNODE_OPA_BIN;
  const pinned = join(packageRoot(), '.tools', 'bin', 'opa');
  return existsSync(pinned) ? pinned : 'opa';
}

/** Options for `policy build`. */
export interface BuildOptions {
  policiesDir: string;
  out: string;
  entrypoints: readonly string[];
  /** Defaults to the git revision of the policies (or a content hash outside git). */
  revision?: string;
  /** `opa build --capabilities` file; defaults to the gateway's config/opa-capabilities.json. */
  capabilities?: string;
  /** Sign the bundle (`.signatures.json`) with this key; the key id goes into the claims. */
  signing?: { keyFile: string; algorithm: string; keyId: string };
  opa?: string;
}

/**
 * Runs `opa build -b -t wasm` over the policies folder (tests excluded) with the gateway's
 * entrypoints, writing the bundle atomically to `out`. OPA's own messages go to stderr.
 */
export async function buildBundle(options: BuildOptions): Promise<{ out: string; revision: string }> {
  const revision = options.revision ?? policyRevision(options.policiesDir);
  mkdirSync(dirname(options.out), { recursive: true });
  const tmp = `${options.out}.${process.pid}.tmp`;
  const capabilities = options.capabilities ?? join(packageRoot(), 'config', 'opa-capabilities.json');
  const args = ['build', '-b', '.', '-t', 'wasm', '-r', revision, '--ignore', '*_test.rego', '--capabilities', capabilities, '-o', tmp];
  for (const e of options.entrypoints) args.push('-e', e);
  let claimsFile: string | undefined;
  if (options.signing) {
    claimsFile = `${options.out}.${process.pid}.claims.json`;
    writeFileSync(claimsFile, JSON.stringify({ keyid: options.signing.keyId }));
    // OPA takes an HMAC secret itself, and a PEM file path for RSA and ECDSA.
    const key = options.signing.algorithm.startsWith('HS') ? readFileSync(options.signing.keyFile, 'utf8').trim() : options.signing.keyFile;
    args.push('--signing-key', key, '--signing-alg', options.signing.algorithm, '--claims-file', claimsFile);
  }
  try {
    await run(options.opa ?? opaBinary(), args, options.policiesDir, 'stderr');
    renameSync(tmp, options.out);
  } finally {
    rmSync(tmp, { force: true });
    if (claimsFile) rmSync(claimsFile, { force: true });
  }
  return { out: options.out, revision };
}

/** Options for `policy test`. */
export interface TestOptions {
  policiesDir: string;
  coverageThreshold: number;
  opa?: string;
}

/**
 * Runs `opa test` (verbose, results to the terminal), then again with coverage, failing
 * when coverage is under the threshold. Returns the measured coverage percent.
 */
export async function testPolicies(options: TestOptions): Promise<{ coverage: number }> {
  const opa = options.opa ?? opaBinary();
  await run(opa, ['test', '-v', '.'], options.policiesDir, 'inherit');
  const out = await run(opa, ['test', '--coverage', '-f', 'json', '.'], options.policiesDir, 'capture');
  const coverage = Number((JSON.parse(out) as { coverage?: number }).coverage ?? 0);
  if (coverage < options.coverageThreshold) {
    throw new ToolchainError(`policy coverage ${coverage.toFixed(1)}% is below the ${options.coverageThreshold}% threshold`, 1);
  }
  return { coverage };
}

/**
 * The bundle revision: `git describe` of the policies (with `-dirty` for local edits), or,
 * outside a git checkout (a container build), a hash of the policy files' content.
 */
export function policyRevision(policiesDir: string): string {
  const git = spawnSync('git', ['describe', '--always', '--dirty', '--abbrev=12'], { cwd: policiesDir, encoding: 'utf8' });
  if (git.status === 0 && git.stdout.trim()) return git.stdout.trim();
  const hash = createHash('sha256');
  for (const file of listFiles(policiesDir)) {
    hash.update(relative(policiesDir, file)).update('\0').update(readFileSync(file)).update('\0');
  }
  return `content-${hash.digest('hex').slice(0, 16)}`;
}

function listFiles(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const path = join(dir, name);
      return statSync(path).isDirectory() ? listFiles(path) : [path];
    });
}

// OPA's stdout goes to our stdout (test reports), to our stderr (build diagnostics, so a
// build's stdout stays clean for scripts), or is captured (JSON to parse).
function run(bin: string, args: string[], cwd: string, stdout: 'inherit' | 'stderr' | 'capture'): Promise<string> {
  return new Promise((resolve, reject) => {
    const out = stdout === 'capture' ? 'pipe' : stdout === 'stderr' ? process.stderr : 'inherit';
    const child = spawn(bin, args, { cwd, stdio: ['ignore', out, 'inherit'] });
    let captured = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (captured += chunk));
    child.on('error', (err: NodeJS.ErrnoException) => {
      const hint = err.code === 'ENOENT' ? ' (install the pinned OPA CLI with `npm run tools`)' : '';
      reject(new ToolchainError(`cannot run ${bin}: ${err.code ?? err.message}${hint}`, 127));
    });
    child.on('close', (code) => {
      if (code === 0) resolve(captured);
      else reject(new ToolchainError(`opa ${args[0]} failed (exit ${code})`, code ?? 1));
    });
  });
}
