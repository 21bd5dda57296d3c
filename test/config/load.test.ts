import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { ConfigError, loadConfig, RULES, SCHEMA } from '../../src/config/index.js';
import { parseUpstreams } from '../../src/mcp/index.js';
import { tempDir } from '../helpers/config.js';
import { runCli } from '../helpers/gateway.js';

const load = (env: Record<string, string> = {}, cwd = '/srv/gw') => loadConfig({ env, cwd });

test('shipped defaults: ports 12082/12083/12084, embedded database, bundle under build/', (t) => {
  const c = load();
  t.is(c.server.controlPort, 12082);
  t.is(c.server.mcpPort, 12083);
  t.is(c.server.egressPort, 12084);
  t.is(c.server.host, '127.0.0.1');
  t.is(c.database.url, null);
  t.is(c.database.dataDir, '/srv/gw/.cynode/data');
  t.is(c.policy.bundle, '/srv/gw/build/bundle.tar.gz');
  t.is(c.log.level, 'info');
  t.true(Object.isFrozen(c.server));
});

test('every schema key has a distinct env override that takes effect', (t) => {
  const envs = Object.values(SCHEMA).map((s) => s.env);
  t.is(new Set(envs).size, envs.length);
  const c = load({
    CYNODE_CONTROL_PORT: '9000',
    DATABASE_URL: 'postgres://gw:pw@db:5432/gw',
    CYNODE_DATA_DIR: '/var/lib/cynode',
    CYNODE_BUNDLE: 'bundles/prod.tar.gz',
    CYNODE_LOG_LEVEL: 'debug',
  });
  t.is(c.server.controlPort, 9000);
  t.is(c.database.url, 'postgres://gw:pw@db:5432/gw');
  t.is(c.database.dataDir, '/var/lib/cynode');
  t.is(c.policy.bundle, '/srv/gw/bundles/prod.tar.gz');
  t.is(c.log.level, 'debug');
});

test('an empty DATABASE_URL means the embedded database', (t) => {
  t.is(load({ DATABASE_URL: '' }).database.url, null);
});

test('a bad env value names the key, the variable and what was expected', (t) => {
  const err = t.throws(() => load({ CYNODE_CONTROL_PORT: 'eighty' }), { instanceOf: ConfigError });
  t.regex(err.message, /'server\.controlPort'/);
  t.regex(err.message, /env CYNODE_CONTROL_PORT/);
  t.regex(err.message, /integer from 0 to 65535/);
});

test('out-of-range and wrong-enum values are refused', (t) => {
  t.throws(() => load({ CYNODE_EGRESS_PORT: '70000' }), { instanceOf: ConfigError, message: /server\.egressPort/ });
  t.throws(() => load({ CYNODE_LOG_LEVEL: 'loud' }), { instanceOf: ConfigError, message: /log\.level.*one of fatal/ });
  t.throws(() => load({ CYNODE_HOST: '  ' }), { instanceOf: ConfigError, message: /server\.host/ });
});

test('a malformed DATABASE_URL is refused without echoing it (it may hold a password)', (t) => {
  const err = t.throws(() => load({ DATABASE_URL: 'mysql://root:hunter2@db/x' }), { instanceOf: ConfigError });
  t.regex(err.message, /database\.url/);
  t.notRegex(err.message, /hunter2/);
  t.regex(err.message, /value hidden/);
});

test('stdio upstream environment entries must be NAME=value and are never echoed', (t) => {
  t.deepEqual(load({ CYNODE_MCP_STDIO_ENV: 'DATABASE_URL=postgres://u:pw@db/x,LOG=warn' }).mcp.stdioEnv, [
    'DATABASE_URL=postgres://u:pw@db/x',
    'LOG=warn',
  ]);
  const err = t.throws(() => load({ CYNODE_MCP_STDIO_ENV: 'sk-secret-value-123' }), { instanceOf: ConfigError });
  t.regex(err.message, /mcp\.stdioEnv/);
  t.notRegex(err.message, /sk-secret/);
});

test('upstreams are http(s) URLs or stdio commands; anything else is refused without echoing arguments', (t) => {
  const [http, stdio] = parseUpstreams(['docs=https://docs.internal/mcp', 'files=stdio:/usr/bin/node server.js --token abc']);
  t.like(http, { name: 'docs', kind: 'http' });
  t.deepEqual(stdio, { name: 'files', kind: 'stdio', command: '/usr/bin/node', args: ['server.js', '--token', 'abc'] });
  for (const bad of ['files=stdio:', 'Files=http://x/mcp', 'x=ftp://host/mcp', 'x=file:///etc/passwd', '=http://x/mcp']) {
    t.throws(() => parseUpstreams([bad]), { message: /mcp\.upstreams/ }, bad);
  }
  t.notRegex(t.throws(() => parseUpstreams(['Upper=stdio:node --token abc']))!.message, /abc/);
});

test('an unknown YAML key is named with its file', (t) => {
  const dir = tempDir();
  const file = join(dir, 'extra.yaml');
  writeFileSync(file, 'server:\n  contrlPort: 1\n');
  const err = t.throws(() => load({ CYNODE_CONFIG: file }), { instanceOf: ConfigError });
  t.regex(err.message, /unknown key 'server\.contrlPort'/);
  t.true(err.message.includes(file));
});

test('an unknown top-level YAML section is refused', (t) => {
  const file = join(tempDir(), 'extra.yaml');
  writeFileSync(file, 'serverz:\n  host: x\n');
  t.throws(() => load({ CYNODE_CONFIG: file }), { instanceOf: ConfigError, message: /unknown key 'serverz'/ });
});

test('a YAML value of the wrong type names the file as its source', (t) => {
  const file = join(tempDir(), 'extra.yaml');
  writeFileSync(file, 'database:\n  poolMax: many\n');
  t.throws(() => load({ CYNODE_CONFIG: file }), { instanceOf: ConfigError, message: new RegExp(`database\\.poolMax.*from ${file}`) });
});

test('layers apply in order: default.yaml < CYNODE_CONFIG file < env', (t) => {
  const file = join(tempDir(), 'extra.yaml');
  writeFileSync(file, 'server:\n  controlPort: 13000\n  mcpPort: 13001\n');
  const c = load({ CYNODE_CONFIG: file, CYNODE_MCP_PORT: '14001' });
  t.is(c.server.controlPort, 13000);
  t.is(c.server.mcpPort, 14001);
});

test('invalid YAML, a mapping where a scalar belongs, and a missing CYNODE_CONFIG file', (t) => {
  const dir = tempDir();
  writeFileSync(join(dir, 'broken.yaml'), 'server: [unclosed\n');
  t.throws(() => load({ CYNODE_CONFIG: join(dir, 'broken.yaml') }), { instanceOf: ConfigError, message: /invalid YAML/ });
  writeFileSync(join(dir, 'list.yaml'), '- a\n- b\n');
  t.throws(() => load({ CYNODE_CONFIG: join(dir, 'list.yaml') }), { instanceOf: ConfigError, message: /must be a mapping/ });
  t.throws(() => load({ CYNODE_CONFIG: join(dir, 'absent.yaml') }), { instanceOf: ConfigError, message: /does not exist/ });
});

test('a config dir without a key reports it as missing with its env variable', (t) => {
  const dir = tempDir();
  writeFileSync(join(dir, 'default.yaml'), 'server:\n  host: 127.0.0.1\n');
  const err = t.throws(() => loadConfig({ env: {}, cwd: '/', configDir: dir }), { instanceOf: ConfigError });
  t.regex(err.message, /missing key 'server\.controlPort'.*CYNODE_CONTROL_PORT/);
});

test('the CLI exits 2 with the message, not a stack trace, on a bad value', async (t) => {
  const { code, stderr } = await runCli(['serve'], { CYNODE_MCP_PORT: 'abc' });
  t.is(code, 2);
  t.regex(stderr, /config error: invalid value for 'server\.mcpPort' \(from env CYNODE_MCP_PORT\)/);
  t.notRegex(stderr, /\n\s+at /);
});

test('the CLI exits 2 on an unknown key in a config file', async (t) => {
  const file = join(tempDir(), 'extra.yaml');
  writeFileSync(file, 'log:\n  levle: debug\n');
  const { code, stderr } = await runCli(['serve'], { CYNODE_CONFIG: file });
  t.is(code, 2);
  t.regex(stderr, /unknown key 'log\.levle'/);
  t.notRegex(stderr, /\n\s+at /);
});

test('providers: egress.providers.<name>.baseUrl, overridden by CYNODE_OPENAI_BASE_URL and CYNODE_ANTHROPIC_BASE_URL', (t) => {
  t.deepEqual(load().egress.providers, {
    openai: { baseUrl: 'https://api.openai.com' },
    anthropic: { baseUrl: 'https://api.anthropic.com' },
  });
  const c = load({ CYNODE_OPENAI_BASE_URL: 'http://127.0.0.1:9999', CYNODE_ANTHROPIC_BASE_URL: 'http://127.0.0.1:9998/v' });
  t.is(c.egress.providers.openai.baseUrl, 'http://127.0.0.1:9999');
  t.is(c.egress.providers.anthropic.baseUrl, 'http://127.0.0.1:9998/v');
  const file = join(tempDir(), 'extra.yaml');
  writeFileSync(file, 'egress:\n  providers:\n    anthropic:\n      baseUrl: https://proxy.internal/anthropic\n');
  t.is(load({ CYNODE_CONFIG: file }).egress.providers.anthropic.baseUrl, 'https://proxy.internal/anthropic');
  t.throws(() => load({ CYNODE_OPENAI_BASE_URL: 'ftp://x' }), {
    instanceOf: ConfigError,
    message: /'egress\.providers\.openai\.baseUrl' \(from env CYNODE_OPENAI_BASE_URL\): expected an http\(s\) URL/,
  });
});

test('the flat provider keys are gone from YAML, and an unknown provider is refused', (t) => {
  const file = join(tempDir(), 'extra.yaml');
  writeFileSync(file, 'egress:\n  openaiBaseUrl: https://x\n');
  t.throws(() => load({ CYNODE_CONFIG: file }), { instanceOf: ConfigError, message: /unknown key 'egress\.openaiBaseUrl'/ });
  writeFileSync(file, 'egress:\n  providers:\n    mistral:\n      baseUrl: https://x\n');
  t.throws(() => load({ CYNODE_CONFIG: file }), { instanceOf: ConfigError, message: /unknown key 'egress\.providers\.mistral'/ });
});

test('http(s) URL keys refuse anything else, naming the key', (t) => {
  t.throws(() => load({ CYNODE_EGRESS_URL: 'not a url' }), { instanceOf: ConfigError, message: /'egress\.url'.*http\(s\) URL/ });
  t.throws(() => load({ CYNODE_GATEWAY_URL: 'file:///x' }), { instanceOf: ConfigError, message: /'artifacts\.gatewayUrl'.*http\(s\) URL/ });
  t.is(load({ CYNODE_EGRESS_URL: '' }).egress.url, null);
});

test('paths resolve against the working folder; a bundle URL is kept as it is', (t) => {
  const c = load({ CYNODE_BUNDLE: 'https://bundles.internal/b.tar.gz', CYNODE_BUNDLE_SIGNING_KEY_FILE: '' });
  t.is(c.policy.bundle, 'https://bundles.internal/b.tar.gz');
  t.is(c.policy.signingKeyFile, null);
  t.is(c.policy.policiesDir, '/srv/gw/policies');
  t.is(c.vault.masterKeyFile, '/srv/gw/.cynode/master-key');
});

test('cross-key rules are named, and each one stops the load with a message naming both keys', (t) => {
  t.true(RULES.length >= 3);
  t.true(RULES.every((r) => r.name.length > 0));
  t.throws(() => load({ CYNODE_BUNDLE_POLL_MIN_DELAY_MS: '5000', CYNODE_BUNDLE_POLL_MAX_DELAY_MS: '4000' }), {
    instanceOf: ConfigError,
    message: /'policy\.pollMaxDelayMs' \(4000\) must not be below 'policy\.pollMinDelayMs' \(5000\)/,
  });
  t.throws(() => load({ CYNODE_JOB_RETRY_BASE_MS: '2000', CYNODE_JOB_RETRY_MAX_MS: '1000' }), {
    instanceOf: ConfigError,
    message: /'jobs\.retryMaxMs'.*'jobs\.retryBaseMs'/,
  });
  t.throws(() => load({ CYNODE_WORKER_HEARTBEAT_INTERVAL_MS: '30000' }), {
    instanceOf: ConfigError,
    message: /'workers\.heartbeatIntervalMs'.*'jobs\.leaseTtlMs'/,
  });
});

test('every schema key is set in the shipped default.yaml (a new key is one schema line plus its default)', (t) => {
  const dir = tempDir();
  writeFileSync(join(dir, 'default.yaml'), '{}\n');
  t.throws(() => loadConfig({ env: {}, cwd: '/', configDir: dir }), { message: /missing key 'server\.host'/ });
  t.notThrows(() => load());
  t.true(Object.keys(SCHEMA).includes('egress.providers.openai.baseUrl'));
});
