import { cpSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type PeerCertificate } from 'node:tls';
import test from 'ava';
import pino from 'pino';
import { readWorkerConfig, runWorker, WorkerClient, WorkerConfigError } from '../../src/cloud-worker/index.js';
import { createFinalGate, readGatewayTransport, signForwardToken } from '../../src/final-gate/index.js';
import { packageRoot } from '../../src/lib/package-root.js';
import { startGateway } from '../../src/main.js';
import { buildBundle, ENTRYPOINTS, REQUIRED_ENTRYPOINTS } from '../../src/policy/index.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { type CertFiles, createTestCa, httpsCall, type TestCa } from '../helpers/certs.js';
import { TEST_ADMIN_TOKEN, tempDir, testConfig } from '../helpers/config.js';
import { SEED_WORKER } from '../helpers/fixtures.js';
import { eventually } from '../helpers/http.js';
import { captureLogger } from '../helpers/start.js';

const NODE = 'cloud-us-east-1-01';
let ca: TestCa;
let serving: CertFiles;
let gw: BootedGateway;
let psk: string;
const logs = captureLogger();

/** The real policies with the client-certificate binding switched on. */
async function bindingBundle(): Promise<string> {
  const dir = tempDir('cynode-policies-');
  cpSync(join(packageRoot(), 'policies'), dir, { recursive: true });
  const data = join(dir, 'config', 'register', 'data.yaml');
  writeFileSync(data, readFileSync(data, 'utf8').replace('require_client_cert_binding: false', 'require_client_cert_binding: true'));
  const out = join(tempDir('cynode-bundle-'), 'bundle.tar.gz');
  await buildBundle({ policiesDir: dir, out, entrypoints: REQUIRED_ENTRYPOINTS, revision: 'tls-binding' });
  return out;
}

test.before(async () => {
  ca = createTestCa();
  // The served pair lives in its own files so the reload test can replace them.
  const first = ca.server('first');
  const dir = tempDir('cynode-served-');
  serving = { ...first, certFile: join(dir, 'server.crt'), keyFile: join(dir, 'server.key') };
  writeFileSync(serving.certFile, first.cert);
  writeFileSync(serving.keyFile, first.key);
  gw = await bootGateway({
    env: {
      CYNODE_BUNDLE: await bindingBundle(),
      CYNODE_TLS_CERT_FILE: serving.certFile,
      CYNODE_TLS_KEY_FILE: serving.keyFile,
      CYNODE_TLS_CLIENT_CA_FILE: ca.certFile,
      CYNODE_WORKER_HEARTBEAT_INTERVAL_MS: '300',
      CYNODE_WORKER_POLL_INTERVAL_MS: '200',
    },
    logger: logs.logger,
  });
  const created = await httpsCall(gw.url(), '/v1/psks', { ca: ca.cert, json: { name: 'tls' } });
  psk = String(created.body.secret);
  await httpsCall(gw.url(), '/v1/preferences/system/default/cloud_allowed', { ca: ca.cert, method: 'PUT', json: { value: true } });
});
test.after.always(() => gw?.stop());

const register = (client: CertFiles | undefined, nodeId = NODE) =>
  httpsCall(gw.url(), '/register', {
    ca: ca.cert,
    ...(client && { client }),
    token: null,
    headers: { 'x-cynode-psk': psk },
    json: { ...SEED_WORKER, node_id: nodeId },
  });

/** The certificate a listener presents to a new connection. */
function servedCertificate(port: number): Promise<PeerCertificate> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca: ca.cert, servername: 'localhost' }, () => {
      resolve(socket.getPeerCertificate());
      socket.end();
    });
    socket.on('error', reject);
  });
}

test.serial('every role serves HTTPS with TLS 1.2 at least', async (t) => {
  for (const role of ['control', 'mcp', 'egress'] as const) {
    t.true(gw.url(role).startsWith('https://'), role);
    t.is((await httpsCall(gw.url(role), '/healthz', { ca: ca.cert })).status, 200, role);
  }
  const port = Number(new URL(gw.url()).port);
  const old = connect({ host: '127.0.0.1', port, ca: ca.cert, maxVersion: 'TLSv1.1', minVersion: 'TLSv1' });
  const refused = await new Promise<Error>((resolve) => old.on('error', resolve));
  t.regex(refused.message, /version|protocol|alert/i);
});

test.serial(
  'mutual TLS end to end: the reference worker registers, leases and reports over HTTPS with its client certificate',
  async (t) => {
    const client = ca.client(NODE);
    const submitted = await httpsCall(gw.url(), '/v1/jobs', {
      ca: ca.cert,
      headers: { 'idempotency-key': `tls-${Date.now()}` },
      json: {
        task_id: 'tls-1',
        user_id: 'user-1',
        requirements: { providers: ['openai'], labels: ['cloud'] },
        payload: { kind: 'echo', input: 'over tls' },
      },
    });
    t.is(submitted.status, 201, JSON.stringify(submitted.body));
    const config = readWorkerConfig({
      CYNODE_ORCH_URL: gw.url(),
      CYNODE_NODE_ID: NODE,
      CYNODE_REGISTER_PSK: psk,
      CYNODE_LABELS: 'cloud,provider_openai',
      CYNODE_CAP_REGION: 'us-east-1',
      CYNODE_CAP_SUPPORTED_PROVIDERS: 'openai',
      CYNODE_CA_FILE: ca.certFile,
      CYNODE_CLIENT_CERT_FILE: client.certFile,
      CYNODE_CLIENT_KEY_FILE: client.keyFile,
      CYNODE_WORKER_POLL_WAIT_MS: '1000',
    });
    t.is(await runWorker(config, logs.logger, { maxJobs: 1 }), 1);
    const job = await httpsCall(gw.url(), `/v1/jobs/${String(submitted.body.id)}`, { ca: ca.cert });
    t.is(job.body.state, 'succeeded', JSON.stringify(job.body));
    const workers = await httpsCall(gw.url(), '/v1/workers', { ca: ca.cert });
    t.true((workers.body.workers as { nodeId: string }[]).some((w) => w.nodeId === NODE));
  },
);

test.serial('a client certificate no trusted CA signed is refused in the TLS layer, before any request', async (t) => {
  const rogue = createTestCa('rogue CA').client(NODE);
  const before = logs.lines.length;
  const err = await t.throwsAsync(register(rogue));
  t.regex(String((err as NodeJS.ErrnoException).code ?? err?.message), /ECONNRESET|EPIPE|socket hang up/i);
  t.true(logs.lines.slice(before).some((l) => l.includes('client certificate refused')));
});

test.serial('the reference worker with a rogue client certificate never registers: every attempt ends in the handshake', async (t) => {
  const rogue = createTestCa('rogue CA').client(NODE);
  const config = readWorkerConfig({
    CYNODE_ORCH_URL: gw.url(),
    CYNODE_NODE_ID: 'cloud-us-east-1-09',
    CYNODE_REGISTER_PSK: psk,
    CYNODE_LABELS: 'cloud',
    CYNODE_CAP_REGION: 'us-east-1',
    CYNODE_CA_FILE: ca.certFile,
    CYNODE_CLIENT_CERT_FILE: rogue.certFile,
    CYNODE_CLIENT_KEY_FILE: rogue.keyFile,
  });
  const stop = new AbortController();
  const before = logs.lines.length;
  setTimeout(() => stop.abort(), 1500);
  t.is(await runWorker(config, logs.logger, { signal: stop.signal }), 0);
  const lines = logs.lines.slice(before);
  t.true(lines.some((l) => l.includes('registration failed; retrying')));
  t.false(lines.some((l) => l.includes('"registered"') || l.includes('worker registered')));
  const workers = await httpsCall(gw.url(), '/v1/workers', { ca: ca.cert });
  t.false((workers.body.workers as { nodeId: string }[]).some((w) => w.nodeId === 'cloud-us-east-1-09'));
});

test.serial('the register policy binds the node id to the certificate: a mismatch and a missing certificate are refused', async (t) => {
  const mismatch = await register(ca.client('cloud-us-east-1-02'));
  t.is(mismatch.status, 403);
  t.deepEqual(mismatch.body.error.details.reasons, ['tls_identity_mismatch']);
  const none = await register(undefined);
  t.is(none.status, 403);
  t.deepEqual(none.body.error.details.reasons, ['client_cert_required']);
  // A DNS subject alternative name binds as well as the common name.
  const bySan = await register(ca.client('fleet-a worker', ['cloud-us-east-1-07']), 'cloud-us-east-1-07');
  t.is(bySan.status, 200, JSON.stringify(bySan.body));
  // What the policy saw: the verified certificate's identity, from the connection.
  let logged: { status: number; body: Record<string, any> } | undefined;
  await eventually(
    async () => (logged = await httpsCall(gw.url(), `/v1/decisions/${String(bySan.body.decision_id)}`, { ca: ca.cert })).status === 200,
  );
  const tls = logged!.body.input.subject.tls;
  t.like(tls, { common_name: 'fleet-a worker', dns_names: ['cloud-us-east-1-07'], uris: [], ip_addresses: [], emails: [] });
  t.deepEqual(tls.subject, { CN: 'fleet-a worker' });
  t.deepEqual(tls.issuer, { CN: 'cynode test CA' });
  t.regex(tls.fingerprint_sha256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  t.true(Date.parse(tls.not_after) > Date.now());
});

test('plain http to a gateway that is not on this machine is refused by the worker before any connection', (t) => {
  const env = { CYNODE_ORCH_URL: 'http://10.255.255.1:12082', CYNODE_NODE_ID: NODE, CYNODE_REGISTER_PSK: 'x' };
  const err = t.throws(() => readWorkerConfig(env), { instanceOf: WorkerConfigError });
  t.regex(err!.message, /CYNODE_ORCH_URL is plain http:\/\/ to 10\.255\.255\.1.*CYNODE_ALLOW_INSECURE=true/);
  t.throws(() => new WorkerClient('http://gateway.example:12082', 'psk', {}), { message: /not loopback/ });
  t.is(readWorkerConfig({ ...env, CYNODE_ALLOW_INSECURE: 'true' }).orchUrl, 'http://10.255.255.1:12082');
  t.notThrows(() => readWorkerConfig({ ...env, CYNODE_ORCH_URL: 'http://127.0.0.1:12082' }));
  t.throws(() => readWorkerConfig({ ...env, CYNODE_ORCH_URL: 'https://gw:1', CYNODE_CA_FILE: '/nonexistent/ca.pem' }), {
    message: /CYNODE_CA_FILE \(\/nonexistent\/ca.pem\) cannot be read/,
  });
});

test.serial('a replaced certificate file is served to new connections without a restart', async (t) => {
  const port = Number(new URL(gw.url('mcp')).port);
  t.is((await servedCertificate(port)).subject.CN, 'first');
  const next = ca.server('second');
  // Replaced as deploy tools do it: written aside, then renamed over the old files.
  writeFileSync(`${serving.keyFile}.new`, next.key);
  writeFileSync(`${serving.certFile}.new`, next.cert);
  renameSync(`${serving.keyFile}.new`, serving.keyFile);
  renameSync(`${serving.certFile}.new`, serving.certFile);
  await eventually(async () => (await servedCertificate(port)).subject.CN === 'second', 5000, 100);

  // A key that does not match the certificate (a deploy half done) is refused; the last good pair stays.
  const before = logs.lines.length;
  writeFileSync(serving.keyFile, ca.server('third').key);
  await eventually(() => logs.lines.slice(before).some((l) => l.includes('TLS certificate change not applied')), 5000, 100);
  t.is((await servedCertificate(port)).subject.CN, 'second');
  writeFileSync(serving.keyFile, next.key);
});

test.serial(
  'the final gate pulls the bundle and the key set over HTTPS trusting CYNODE_CA_FILE, and refuses plain http off loopback',
  async (t) => {
    const logger = pino({ level: 'silent' });
    const gate = createFinalGate({
      gatewayUrl: gw.url(),
      audience: 'artifact-store',
      bundleToken: TEST_ADMIN_TOKEN,
      logger,
      transport: readGatewayTransport({ caFile: ca.certFile }),
    });
    t.teardown(() => gate.close());
    await gate.ready;
    t.is(gate.engine.status().active?.revision, 'tls-binding');
    const input = { action: 'register', subject: { ...SEED_WORKER, node_id: NODE, tls: { common_name: NODE, dns_names: [] } } };
    const { revision } = await gw.gateway.decisions.decide(ENTRYPOINTS.register, input, NODE);
    const body = '{"put":"x"}';
    const claims = {
      issuer: 'cynode-gateway',
      audience: 'artifact-store',
      subject: NODE,
      entrypoint: ENTRYPOINTS.register,
      input,
      revision,
    };
    const token = await signForwardToken(gw.gateway.keys.current(), claims, body, 30_000);
    t.true((await gate.check(token, body)).decision.allow);

    // Without the CA the gateway's certificate is not trusted: no bundle becomes active.
    const untrusting = createFinalGate({ gatewayUrl: gw.url(), audience: 'artifact-store', bundleToken: TEST_ADMIN_TOKEN, logger });
    t.teardown(() => untrusting.close());
    await untrusting.ready;
    t.is(untrusting.engine.status().active, undefined);
    const plain = { gatewayUrl: 'http://gateway.example:12082', audience: 'a', bundleToken: null, logger };
    t.throws(() => createFinalGate(plain), { message: /not loopback.*CYNODE_ALLOW_INSECURE=true/ });
  },
);

test('a certificate without its key, client CAs without HTTPS, and an unreadable certificate file stop the start, naming the key', async (t) => {
  t.throws(() => testConfig({ CYNODE_TLS_CERT_FILE: '/tmp/x.crt' }), {
    message: /'server.tls.certFile' and 'server.tls.keyFile' must be set together/,
  });
  t.throws(() => testConfig({ CYNODE_TLS_CLIENT_CA_FILE: '/tmp/ca.crt' }), {
    message: /'server.tls.clientCaFile' needs 'server.tls.certFile'/,
  });
  const missing = testConfig({ CYNODE_TLS_CERT_FILE: '/nonexistent/server.crt', CYNODE_TLS_KEY_FILE: serving.keyFile });
  const err = await t.throwsAsync(
    startGateway({ config: { ...missing, database: gw.config.database }, logger: pino({ level: 'silent' }), roles: ['control'] }),
  );
  t.is(err!.name, 'StartupError');
  t.regex(err!.message, /cannot read 'server.tls.certFile' \(\/nonexistent\/server.crt\)/);
});
