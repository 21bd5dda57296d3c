import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import test from 'ava';
import { packageRoot } from '../../src/lib/package-root.js';
import { buildBundle, REQUIRED_ENTRYPOINTS } from '../../src/policy/index.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { tempDir } from '../helpers/config.js';
import { call, eventually } from '../helpers/http.js';

// The gateway pulls signed bundles (built by `opa build`) from a real bundle server on
// loopback. The server then goes down, serves garbage, serves a bundle signed by a key the
// gateway does not trust, and one with no signature: each time the last good bundle stays
// active, decisions keep being made with it, /readyz stays ready, and /v1/status records
// the error next to the time of the last success. When a good bundle returns, it wins.

const dir = tempDir('cynode-bundle-server-');
type Status = {
  active?: { revision: string; digest: string };
  lastSuccessAt: string | null;
  lastError: { code: string; message: string; at: string } | null;
};
type Mode = 'good' | 'next' | 'garbage' | 'rogue' | 'unsigned';
const bundles = {} as Record<Exclude<Mode, 'garbage'>, Buffer>;
let mode: Mode = 'good';
let server: Server | undefined;
let port = 0;
let gw: BootedGateway;

/** A fresh ES256 key pair: the private key in a PEM file, the public key as PEM text. */
function keyPair(name: string): { keyFile: string; publicPem: string } {
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const keyFile = join(dir, `${name}.pem`);
  writeFileSync(keyFile, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  return { keyFile, publicPem: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

async function build(revision: string, keyFile?: string): Promise<Buffer> {
  const out = join(dir, `${revision}.tar.gz`);
  await buildBundle({
    policiesDir: join(packageRoot(), 'policies'),
    out,
    entrypoints: REQUIRED_ENTRYPOINTS,
    revision,
    ...(keyFile && { signing: { keyFile, algorithm: 'ES256', keyId: 'trusted' } }),
  });
  return readFileSync(out);
}

/** An OPA Bundle Service on loopback: ETag per content, 304 on a match. */
async function serve(): Promise<void> {
  server = createServer((req, res) => {
    const body = mode === 'garbage' ? Buffer.concat([Buffer.from([0x1f, 0x8b]), randomBytes(512)]) : bundles[mode];
    const etag = `"${mode}"`;
    if (req.headers['if-none-match'] === etag) return void res.writeHead(304, { etag }).end();
    res.writeHead(200, { 'content-type': 'application/gzip', etag }).end(body);
  });
  await new Promise<void>((resolve) => server!.listen(port, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
}
async function shutDown(): Promise<void> {
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
}

test.before(async () => {
  const trusted = keyPair('trusted');
  const rogue = keyPair('rogue');
  const keysFile = join(dir, 'keys.json');
  writeFileSync(keysFile, JSON.stringify({ keys: { trusted: { algorithm: 'ES256', key: trusted.publicPem } } }));
  [bundles.good, bundles.next, bundles.rogue, bundles.unsigned] = await Promise.all([
    build('good-1', trusted.keyFile),
    build('good-2', trusted.keyFile),
    build('rogue-1', rogue.keyFile),
    build('unsigned-1'),
  ]);
  await serve();
  gw = await bootGateway({
    env: {
      CYNODE_BUNDLE: `http://127.0.0.1:${port}/bundles/cynode`,
      CYNODE_POLICY_ALLOW_UNSIGNED: 'false',
      CYNODE_BUNDLE_VERIFICATION_KEYS_FILE: keysFile,
      CYNODE_BUNDLE_POLL_MIN_DELAY_MS: '100',
      CYNODE_BUNDLE_POLL_MAX_DELAY_MS: '150',
    },
    roles: ['control'],
  });
});
test.after.always(async () => {
  await gw?.stop();
  await shutDown();
});

const statusOf = async () => (await call<{ bundles: { cynode: Status } }>(gw.url(), '/v1/status')).body.bundles.cynode;
const INPUT = {
  action: 'register',
  subject: {
    node_id: 'cloud-bs-01',
    labels: ['cloud'],
    region: 'us-east-1',
    provider: 'aws',
    inference_mode: 'provider_api',
    supported_providers: ['openai'],
  },
  resource: {},
  context: {},
};
/** One decision through the OPA-compatible API, and the revision its log entry names. */
async function decide(): Promise<{ result: unknown; revision: string }> {
  const res = await call<{ result: unknown; decision_id: string }>(gw.url(), '/v1/data/cynode/register/decision', {
    json: { input: INPUT },
  });
  if (res.status !== 200) throw new Error(`decision refused: ${res.status} ${JSON.stringify(res.body)}`);
  const logged = await call<{ bundles: { cynode: { revision: string } } }>(gw.url(), `/v1/decisions/${res.body.decision_id}`);
  return { result: res.body.result, revision: logged.body.bundles.cynode.revision };
}

test.serial('a bundle server that fails in every way never replaces the last good bundle, and status says so', async (t) => {
  const first = await statusOf();
  t.is(first.active?.revision, 'good-1');
  t.is(first.lastError, null);
  t.truthy(first.lastSuccessAt);
  const good = await decide();
  t.is(good.revision, 'good-1');

  const failures: { name: string; apply: () => Promise<void> | void; code: string; message: RegExp }[] = [
    { name: 'garbage', apply: () => void (mode = 'garbage'), code: 'bundle_malformed', message: /./ },
    { name: 'untrusted signature', apply: () => void (mode = 'rogue'), code: 'signature_invalid', message: /./ },
    { name: 'no signature', apply: () => void (mode = 'unsigned'), code: 'signature_missing', message: /./ },
    { name: 'server down', apply: shutDown, code: 'bundle_unreadable', message: /cannot download/ },
  ];
  let since = first.lastSuccessAt!;
  for (const f of failures) {
    await f.apply();
    const ms = await eventually(async () => {
      const s = await statusOf();
      return s.lastError?.code === f.code && f.message.test(s.lastError.message) && s.lastError.at > since;
    }, 5000);
    const s = await statusOf();
    t.is(s.active?.revision, 'good-1', `${f.name}: the last good bundle stays active`);
    t.is(s.lastSuccessAt, first.lastSuccessAt, `${f.name}: the last success is still the good bundle's`);
    t.true(s.lastError!.at > s.lastSuccessAt!, `${f.name}: the error is newer than the last success`);
    t.deepEqual(await decide(), good, `${f.name}: decisions keep working with the last good bundle`);
    const ready = await call<{ status: string; bundle: { ok: boolean; revision: string; lastError?: { code: string } } }>(
      gw.url(),
      '/readyz',
      { token: null },
    );
    t.is(ready.status, 200, `${f.name}: still ready`);
    t.like(ready.body.bundle, { ok: true, revision: 'good-1', lastError: { code: f.code } });
    t.log(`${f.name}: recorded as ${f.code} within ${ms} ms; good-1 still active and deciding`);
    since = s.lastError!.at;
  }

  // The server comes back with a new good bundle: it is activated.
  mode = 'next';
  await serve();
  const ms = await eventually(async () => (await statusOf()).active?.revision === 'good-2', 5000);
  const back = await statusOf();
  t.true(back.lastSuccessAt! > first.lastSuccessAt!);
  t.is((await decide()).revision, 'good-2');
  t.log(`server back: good-2 active ${ms} ms later`);
});
