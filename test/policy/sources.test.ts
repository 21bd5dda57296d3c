import { spawn } from 'node:child_process';
import { copyFileSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import test from 'ava';
import { packageRoot } from '../../src/lib/package-root.js';
import { buildBundle, opaBinary, REQUIRED_ENTRYPOINTS } from '../../src/policy/index.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { ensureBundle } from '../helpers/bundle.js';
import { tempDir } from '../helpers/config.js';
import { call, eventually } from '../helpers/http.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { startTestGateway, type TestGateway } from '../helpers/start.js';

const READER = 'bundle-reader-token-0123456789';
let pgDb: TestDatabase;
let origin: BootedGateway;
let bundleFile: string;
const others: TestGateway[] = [];

type BundleStatus = { active?: { revision: string; digest: string }; lastError: { code: string; message: string } | null };
const statusOf = async (g: TestGateway) => (await call<{ bundles: { cynode: BundleStatus } }>(g.url(), '/v1/status')).body.bundles.cynode;

/** Replaces `path` atomically with the real policies built under another revision. */
async function publish(path: string, revision: string): Promise<void> {
  const tmp = join(tempDir(), 'next.tar.gz');
  await buildBundle({ policiesDir: join(packageRoot(), 'policies'), out: tmp, entrypoints: REQUIRED_ENTRYPOINTS, revision });
  renameSync(tmp, path);
}

test.before(async () => {
  pgDb = await createTestDatabase();
  bundleFile = join(tempDir(), 'bundle.tar.gz');
  copyFileSync(await ensureBundle(), bundleFile);
  origin = await bootGateway({
    env: { CYNODE_BUNDLE: bundleFile, CYNODE_BUNDLE_SERVICE_TOKEN: READER },
    roles: ['control'],
    database: pgDb,
  });
});
test.after.always(async () => {
  await Promise.all(others.map((g) => g.gateway.stop()));
  await origin?.stop();
  await pgDb?.drop();
});

async function follower(env: Record<string, string>): Promise<TestGateway> {
  const g = await startTestGateway({ DATABASE_URL: pgDb.url, CYNODE_BUNDLE_TOKEN: READER, ...env }, ['control']);
  others.push(g);
  return g;
}

test.serial('the bundle service serves the exact bytes, with ETag, 304 and authentication', async (t) => {
  const url = `${origin.url()}/v1/bundles/cynode`;
  const res = await fetch(url, { headers: { authorization: `Bearer ${READER}` } });
  t.is(res.status, 200);
  t.is(res.headers.get('content-type'), 'application/gzip');
  const bytes = Buffer.from(await res.arrayBuffer());
  t.true(bytes.equals(readFileSync(bundleFile)));
  const etag = res.headers.get('etag')!;
  t.regex(etag, /^"[0-9a-f]{64}"$/);
  const again = await fetch(url, { headers: { authorization: `Bearer ${READER}`, 'if-none-match': etag } });
  t.is(again.status, 304);
  t.is((await fetch(url)).status, 401);
  t.is((await call(origin.url(), '/v1/bundles/other')).status, 404);
  t.is((await call(origin.url(), '/v1/status', { token: READER })).status, 403, 'a bundle reader is not an admin');
});

test.serial('a changed bundle file is picked up; a broken one leaves the last good bundle active', async (t) => {
  await publish(bundleFile, 'file-v2');
  const ms = await eventually(async () => (await statusOf(origin)).active?.revision === 'file-v2', 10_000);
  t.log(`file change picked up in ${ms} ms`);

  writeFileSync(bundleFile + '.tmp', 'definitely not a bundle');
  renameSync(bundleFile + '.tmp', bundleFile);
  await eventually(async () => (await statusOf(origin)).lastError?.code === 'bundle_malformed', 10_000);
  const status = await statusOf(origin);
  t.is(status.active?.revision, 'file-v2', 'last good bundle kept');
  const decision = await call<{ result: { allow: boolean } }>(origin.url(), '/v1/data/cynode/register/decision', { json: { input: {} } });
  t.is(decision.status, 200, 'decisions go on with the last good bundle');
  const metrics = (await call<string>(origin.url(), '/metrics', { token: null })).body;
  t.regex(metrics, /cynode_bundle_loads_total\{bundle="cynode",outcome="refused",code="bundle_malformed"\} [1-9]/);
  t.regex(metrics, /cynode_bundle_info\{bundle="cynode",revision="file-v2"/);
  await publish(bundleFile, 'file-v3');
  await eventually(async () => (await statusOf(origin)).active?.revision === 'file-v3', 10_000);
});

test.serial('a replica pulls the bundle from a bundle service URL and follows changes', async (t) => {
  const b = await follower({
    CYNODE_BUNDLE: `${origin.url()}/v1/bundles/cynode`,
    CYNODE_BUNDLE_POLL_MIN_DELAY_MS: '100',
    CYNODE_BUNDLE_POLL_MAX_DELAY_MS: '200',
  });
  const originDigest = (await statusOf(origin)).active!.digest;
  t.is((await statusOf(b)).active?.digest, originDigest);
  await publish(bundleFile, 'url-v4');
  await eventually(async () => (await statusOf(b)).active?.revision === 'url-v4', 10_000);
  t.is((await call(b.url(), '/readyz', { token: null })).status, 200);
});

test.serial('long polling delivers a new bundle without waiting for the poll delay', async (t) => {
  const b = await follower({
    CYNODE_BUNDLE: `${origin.url()}/v1/bundles/cynode`,
    CYNODE_BUNDLE_POLL_MIN_DELAY_MS: '60000',
    CYNODE_BUNDLE_POLL_MAX_DELAY_MS: '60000',
    CYNODE_BUNDLE_LONG_POLL_TIMEOUT_MS: '20000',
  });
  await new Promise((r) => setTimeout(r, 300)); // let the follower park its long poll
  await publish(bundleFile, 'long-v5');
  const ms = await eventually(async () => (await statusOf(b)).active?.revision === 'long-v5', 8_000);
  t.log(`long poll delivered the new bundle ${ms} ms after it was published`);
  t.true(ms < 5_000);
});

test.serial('a bundle server that is down or serves garbage never replaces the last good bundle', async (t) => {
  let mode: 'ok' | 'garbage' | 'error' = 'ok';
  const good = readFileSync(bundleFile);
  const server = createServer((_req, res) => {
    if (mode === 'error') return void res.writeHead(500).end('boom');
    if (mode === 'garbage') return void res.writeHead(200, { 'content-type': 'application/gzip', etag: '"g"' }).end('\x1f\x8bgarbage');
    res.writeHead(200, { 'content-type': 'application/gzip', etag: '"ok"' }).end(good);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const b = await follower({
    CYNODE_BUNDLE: `http://127.0.0.1:${(server.address() as AddressInfo).port}/bundle.tar.gz`,
    CYNODE_BUNDLE_POLL_MIN_DELAY_MS: '100',
    CYNODE_BUNDLE_POLL_MAX_DELAY_MS: '150',
  });
  const revision = (await statusOf(b)).active?.revision;
  t.truthy(revision);
  mode = 'garbage';
  await eventually(async () => (await statusOf(b)).lastError?.code === 'bundle_malformed');
  mode = 'error';
  await eventually(async () => /answered 500/.test((await statusOf(b)).lastError?.message ?? ''));
  await new Promise<void>((r) => server.close(() => r()));
  await eventually(async () => /cannot download/.test((await statusOf(b)).lastError?.message ?? ''));
  t.is((await statusOf(b)).active?.revision, revision);
  t.is((await call(b.url(), '/readyz', { token: null })).status, 200);
});

test.serial('a real `opa run` pulls the bundle from the gateway and answers like it', async (t) => {
  const dir = tempDir();
  const config = join(dir, 'opa.yaml');
  writeFileSync(
    config,
    [
      'services:',
      '  gateway:',
      `    url: ${origin.url()}/v1`,
      '    credentials:',
      '      bearer:',
      `        token: ${READER}`,
      'bundles:',
      '  cynode:',
      '    service: gateway',
      '    resource: bundles/cynode',
      '    polling:',
      '      min_delay_seconds: 1',
      '      max_delay_seconds: 2',
      '',
    ].join('\n'),
  );
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const opa = spawn(opaBinary(), ['run', '--server', '--addr', `127.0.0.1:${port}`, '--config-file', config], { stdio: 'ignore' });
  t.teardown(() => opa.kill('SIGKILL'));
  const opaUrl = `http://127.0.0.1:${port}`;
  await eventually(
    async () => {
      const r = await fetch(`${opaUrl}/health?bundles`).catch(() => undefined);
      return r?.status === 200;
    },
    20_000,
    200,
  );
  const input = {
    subject: {
      node_id: 'cloud-us-east-1-01',
      labels: ['cloud'],
      region: 'eu-west-1',
      provider: 'aws',
      inference_mode: 'provider_api',
      supported_providers: ['openai'],
    },
  };
  const fromOpa = (await call<{ result: unknown }>(opaUrl, '/v1/data/cynode/register/decision', { json: { input }, token: null })).body
    .result;
  const fromGateway = (await call<{ result: unknown }>(origin.url(), '/v1/data/cynode/register/decision', { json: { input } })).body.result;
  t.deepEqual(fromOpa, fromGateway);
  t.deepEqual(fromGateway, { allow: true, reasons: [] });
});
