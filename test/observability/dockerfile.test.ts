import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import Router from '@koa/router';
import test from 'ava';
import { parse } from 'yaml';
import { OTHER_ENV } from '../../scripts/gen-config-doc.js';
import { loadConfig } from '../../src/config/index.js';
import { SCHEMA } from '../../src/config/schema.js';
import { HEALTH_ROUTES } from '../../src/health/index.js';
import { packageRoot } from '../../src/lib/package-root.js';
import { tempDir } from '../helpers/config.js';

// Docker cannot run here, so this holds the Dockerfile's facts against the repository.

const root = packageRoot();
const read = (file: string) => readFileSync(join(root, file), 'utf8');

interface Instruction {
  op: string;
  args: string;
  stage: number;
}

/** The Dockerfile's instructions, continuation lines joined, comments dropped, each with its stage index. */
function instructions(): Instruction[] {
  const lines = read('Dockerfile').replace(/\\\n/g, ' ').split('\n');
  const out: Instruction[] = [];
  let stage = -1;
  for (const line of lines.map((l) => l.trim())) {
    if (!line || line.startsWith('#')) continue;
    const m = /^(\w+)\s+(.*)$/.exec(line)!;
    const op = m[1]!.toUpperCase();
    if (op === 'FROM') stage++;
    out.push({ op, args: m[2]!.replace(/\s+/g, ' ').trim(), stage });
  }
  return out;
}

const all = instructions();
const stages = all.filter((i) => i.op === 'FROM').map((i) => ({ image: i.args.split(' ')[0]!, name: /\bAS (\S+)$/i.exec(i.args)?.[1] }));
const inStage = (n: number, op: string) => all.filter((i) => i.stage === n && i.op === op);
const last = stages.length - 1;
/** `KEY=value` pairs of ENV instructions in a stage. */
const envOf = (n: number) =>
  Object.fromEntries(inStage(n, 'ENV').flatMap((i) => [...i.args.matchAll(/(\w+)=(\S*)/g)].map((m) => [m[1]!, m[2]!])));

test('multi-stage: a Go stage builds the OPA version pinned in scripts/install-tools.sh, and the bundle', (t) => {
  t.true(stages.length >= 3, 'build, Go and runtime stages');
  const pinned = /^OPA_VERSION="(v[\d.]+)"$/m.exec(read('scripts/install-tools.sh'))?.[1];
  t.truthy(pinned);
  const go = stages.findIndex((s) => s.image.startsWith('golang:'));
  t.true(go >= 0, 'a golang stage');
  const goVersion = /^golang:(\d+)\.(\d+)/.exec(stages[go]!.image);
  t.true(Number(goVersion?.[1]) === 1 && Number(goVersion?.[2]) >= 26, 'Go 1.26+, as install-tools.sh requires');
  t.deepEqual(
    inStage(go, 'ARG').map((a) => a.args),
    [`OPA_VERSION=${pinned}`],
  );
  const runs = inStage(go, 'RUN').map((r) => r.args);
  // Built as install-tools.sh builds it: cgo + opa_wasm, so `opa run` can load Wasm bundles.
  t.true(
    runs.some((r) => /CGO_ENABLED=1/.test(r) && /go install -tags opa_wasm github\.com\/open-policy-agent\/opa@\$\{OPA_VERSION\}/.test(r)),
  );
  t.regex(
    read('scripts/install-tools.sh'),
    /CGO_ENABLED=1 GOBIN="\$bin" go install -tags opa_wasm "github\.com\/open-policy-agent\/opa@\$1"/,
  );
  const bundle = runs.find((r) => /policy build/.test(r));
  t.truthy(bundle, 'the Go stage builds the bundle');
  t.regex(bundle!, /CYNODE_OPA_BIN=\/out\/opa node dist\/src\/cli\/main\.js policy build --out build\/bundle\.tar\.gz/);
  t.true(
    inStage(last, 'COPY').some((c) => c.args === `--from=${stages[go]!.name} /app/build/bundle.tar.gz ./build/bundle.tar.gz`),
    'the runtime takes the bundle the Go stage built',
  );
});

test('the runtime stage is a small Node image matching package.json engines, and runs `serve` from the built CLI', (t) => {
  const pkg = JSON.parse(read('package.json')) as { engines: { node: string }; bin: Record<string, string> };
  const major = /(\d+)/.exec(pkg.engines.node)![1];
  t.regex(stages[last]!.image, new RegExp(`^node:${major}(\\.[\\d.]+)?-\\w+-slim$`));
  t.is(inStage(last, 'WORKDIR')[0]?.args, '/app');
  const entry = JSON.parse(inStage(last, 'ENTRYPOINT')[0]!.args) as string[];
  t.deepEqual(entry, ['node', pkg.bin['cynode-gateway']!.replace(/^\.\//, '')]);
  t.deepEqual(JSON.parse(inStage(last, 'CMD')[0]!.args), ['serve']);
  t.regex(read('src/cli/main.ts'), /'serve'/, 'serve is a CLI command');
});

test('every COPY source exists in the repository (and is not docker-ignored) or comes from an earlier stage', (t) => {
  const ignored = read('.dockerignore')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  let checked = 0;
  for (const copy of all.filter((i) => i.op === 'COPY')) {
    const parts = copy.args.split(' ');
    const from = parts.find((p) => p.startsWith('--from='))?.slice('--from='.length);
    const sources = parts.filter((p) => !p.startsWith('--')).slice(0, -1);
    if (from) {
      const index = stages.findIndex((s) => s.name === from);
      t.true(index >= 0 && index < copy.stage, `--from=${from} names an earlier stage`);
      continue;
    }
    for (const source of sources) {
      t.true(existsSync(join(root, source)), `COPY ${source} exists`);
      t.false(
        ignored.some((pattern) => source === pattern || source.startsWith(`${pattern}/`)),
        `${source} is not in .dockerignore`,
      );
      checked++;
    }
  }
  t.true(checked >= 8);
  t.true(ignored.includes('config/local.yaml'), "a developer's config/local.yaml never reaches the image");
});

test('ENV names are real config variables, their values load, and every path they name is copied in', (t) => {
  const env = envOf(last);
  const known = new Set<string>(Object.values(SCHEMA).map((s) => s.env));
  for (const name of Object.keys(env)) t.true(name === 'NODE_ENV' || known.has(name), `${name} is a config env variable`);
  // Any other CYNODE_* the Dockerfile names (e.g. CYNODE_OPA_BIN for `policy build`) is one the code reads.
  const other = new Set(OTHER_ENV.map((e) => e.env));
  for (const name of read('Dockerfile').match(/\bCYNODE_[A-Z0-9_]*[A-Z0-9]\b/g) ?? []) t.true(known.has(name) || other.has(name), name);
  t.true(Object.keys(env).length >= 8);

  // The real config loader accepts them (types, bounds), over the shipped default.yaml alone.
  const configDir = tempDir('cynode-docker-config-');
  copyFileSync(join(root, 'config', 'default.yaml'), join(configDir, 'default.yaml'));
  const config = loadConfig({ env, cwd: '/app', configDir });
  t.is(config.server.host, '0.0.0.0');
  t.is(config.policy.signingKeyFile, null, 'the image signs nothing');

  const workdir = inStage(last, 'WORKDIR')[0]!.args;
  const copied = inStage(last, 'COPY').map((c) => posix.resolve(workdir, c.args.split(' ').at(-1)!));
  for (const file of [config.policy.bundle, config.policy.verificationKeysFile!]) {
    t.true(
      copied.some((dest) => file === dest || file.startsWith(`${dest}/`)),
      `${file} is put in the image by a COPY`,
    );
  }
  // State the gateway writes lives in the one directory made writable for the runtime user.
  for (const file of [config.database.dataDir, config.auth.adminTokenFile, config.vault.masterKeyFile])
    t.true(file.startsWith('/var/lib/cynode/'), file);
  t.true(inStage(last, 'RUN').some((r) => r.args === 'mkdir -p /var/lib/cynode && chown 1000:1000 /var/lib/cynode'));
});

test('non-root USER, the default ports exposed, and a HEALTHCHECK on a real endpoint and port', (t) => {
  const user = inStage(last, 'USER').at(-1)!.args;
  const [uid, gid] = user.split(':');
  t.regex(uid!, /^\d+$/, 'numeric, so runAsNonRoot can verify it');
  t.not(Number(uid), 0);
  t.not(Number(gid), 0);

  const defaults = parse(read('config/default.yaml')) as { server: Record<string, number> };
  const ports = [defaults.server.controlPort, defaults.server.mcpPort, defaults.server.egressPort];
  t.deepEqual(inStage(last, 'EXPOSE')[0]!.args.split(' ').map(Number), ports);
  const env = envOf(last);
  t.deepEqual([env.CYNODE_CONTROL_PORT, env.CYNODE_MCP_PORT, env.CYNODE_EGRESS_PORT].map(Number), ports);

  const check = inStage(last, 'HEALTHCHECK')[0]!.args;
  const probe = /fetch\('http:\/\/127\.0\.0\.1:'\+\(process\.env\.(\w+)\|\|(\d+)\)\+'(\/\w+)'\)/.exec(check.replace(/\\"/g, '"'));
  t.truthy(probe, check);
  t.is(probe![1], SCHEMA['server.controlPort'].env);
  t.is(Number(probe![2]), defaults.server.controlPort!);
  // The path is one the control role really serves.
  const router = new Router();
  for (const route of HEALTH_ROUTES.filter((r) => r.roles.includes('control'))) router.get(route.path, () => undefined);
  t.true(
    router.stack.some((l) => l.methods.includes('GET') && l.match(probe![3]!)),
    `${probe![3]} is a route`,
  );
  t.regex(check, /--interval=\d+s --timeout=\d+s --start-period=\d+s --retries=\d+ CMD \[/);
});
