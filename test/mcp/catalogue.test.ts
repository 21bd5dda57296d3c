import { McpError } from '@modelcontextprotocol/sdk/types.js';
import test from 'ava';
import { createToolCatalogue, MCP_UPSTREAM_FAILED, type Upstream, type UpstreamClient } from '../../src/mcp/index.js';
import { captureLogger } from '../helpers/start.js';

// The catalogue on its own: a scripted upstream client and a clock the test moves.

const docs: Upstream = { name: 'docs', kind: 'http', url: new URL('http://docs.internal/mcp') };
const files: Upstream = { name: 'files', kind: 'stdio', command: 'files-server', args: [] };
const schema = { type: 'object', properties: { q: { type: 'string' } }, required: ['q'], additionalProperties: false };

/** An upstream client whose tools/list answers come from `answer`, counting the requests per upstream. */
function scriptedClient(answer: (upstream: Upstream) => unknown): UpstreamClient & { asked: Map<string, number> } {
  const asked = new Map<string, number>();
  return {
    asked,
    async request(upstream, method) {
      if (method !== 'tools/list') throw new Error(`unexpected ${method}`);
      asked.set(upstream.name, (asked.get(upstream.name) ?? 0) + 1);
      const a = answer(upstream);
      if (a instanceof Error) throw a;
      return a;
    },
    async close() {},
  };
}

function catalogue(client: UpstreamClient, upstreams: Upstream[], discoveryTtlMs = 60_000) {
  const clock = { now: 1_000_000 };
  const logs = captureLogger();
  const cat = createToolCatalogue({ upstreams, client, discoveryTtlMs, logger: logs.logger, now: () => clock.now });
  return { cat, clock, logs };
}

test('api.call comes first, then each upstream tool under <upstream>.<name>, in config order', async (t) => {
  const client = scriptedClient((u) => ({ tools: [{ name: `${u.name}_search`, description: 'finds', inputSchema: schema }] }));
  const { cat } = catalogue(client, [docs, files]);
  const tools = await cat.list();
  t.deepEqual(
    tools.map((x) => [x.name, x.local, x.upstream?.name]),
    [
      ['api.call', 'api.call', undefined],
      ['docs.docs_search', 'docs_search', 'docs'],
      ['files.files_search', 'files_search', 'files'],
    ],
  );
  t.is((await cat.find('files.files_search'))?.upstream, files);
  t.is(await cat.find('files_search'), undefined, 'only exported names are found');
  t.is(await cat.find('shell.exec'), undefined);
});

test('tools with unusable names or no input schema are left out', async (t) => {
  const client = scriptedClient(() => ({
    tools: [
      { name: 'ok', inputSchema: schema },
      { name: 'has space', inputSchema: schema },
      { name: 'x'.repeat(65), inputSchema: schema },
      { name: 'no_schema' },
      { name: 'string_schema', inputSchema: 'object' },
      { name: 42, inputSchema: schema },
      null,
    ],
  }));
  const { cat } = catalogue(client, [docs]);
  t.deepEqual(
    (await cat.list()).map((x) => x.name),
    ['api.call', 'docs.ok'],
  );
});

test('an upstream is asked again only once its list is older than discoveryTtlMs', async (t) => {
  let version = 1;
  const client = scriptedClient(() => ({ tools: [{ name: `v${version}`, inputSchema: schema }] }));
  const { cat, clock } = catalogue(client, [docs], 10_000);
  t.truthy(await cat.find('docs.v1'));
  version = 2;
  clock.now += 9_999;
  await cat.list();
  await cat.find('docs.v1');
  t.is(client.asked.get('docs'), 1, 'reused within the TTL');
  t.truthy(await cat.find('docs.v1'));
  clock.now += 1;
  t.truthy(await cat.find('docs.v2'), 'asked again at the TTL');
  t.is(await cat.find('docs.v1'), undefined);
  t.is(client.asked.get('docs'), 2);
});

test('a failing upstream keeps the tools it last listed, or contributes none, and is logged', async (t) => {
  let down = false;
  const client = scriptedClient((u) =>
    down || u.name === 'files' ? new Error('connect ECONNREFUSED') : { tools: [{ name: 'search', inputSchema: schema }] },
  );
  const { cat, clock, logs } = catalogue(client, [docs, files], 0);
  t.deepEqual(
    (await cat.list()).map((x) => x.name),
    ['api.call', 'docs.search'],
    'files never answered: no tools of its own',
  );
  down = true;
  clock.now += 1;
  t.deepEqual(
    (await cat.list()).map((x) => x.name),
    ['api.call', 'docs.search'],
    'docs keeps what it listed',
  );
  t.is(client.asked.get('docs'), 2);
  const warnings = logs.lines
    .map((l) => JSON.parse(l) as { msg: string; upstream: string; err: string })
    .filter((l) => l.msg === 'upstream tool discovery failed');
  t.true(warnings.some((w) => w.upstream === 'docs' && w.err === 'connect ECONNREFUSED'));
  t.true(warnings.some((w) => w.upstream === 'files'));
});

test('input schemas are compiled once per tool and schema, and say what is wrong', async (t) => {
  const client = scriptedClient(() => ({ tools: [{ name: 'search', inputSchema: schema }] }));
  const { cat } = catalogue(client, [docs]);
  const tool = (await cat.find('docs.search'))!;
  const validate = cat.validator(tool);
  t.is(cat.validator(tool), validate, 'the same compiled validator');
  t.not(cat.validator({ ...tool, inputSchema: { type: 'object' } }), validate, 'a changed schema is compiled again');
  t.is(validate({ q: 'mcp' }), undefined);
  t.regex(validate({ q: 1, extra: true })!, /must be string/);
  const apiCall = (await cat.find('api.call'))!;
  t.regex(cat.validator(apiCall)({ provider: 'openai' })!, /must have required property 'operation'/);
});

test('a schema that cannot be compiled is the upstream failing (-32002 upstream_error)', async (t) => {
  const client = scriptedClient(() => ({ tools: [{ name: 'broken', inputSchema: { type: 'no-such-type' } }] }));
  const { cat } = catalogue(client, [docs]);
  const tool = (await cat.find('docs.broken'))!;
  const err = t.throws(() => cat.validator(tool), { instanceOf: McpError })!;
  t.is((err as McpError).code, MCP_UPSTREAM_FAILED);
  t.deepEqual((err as McpError).data, { code: 'upstream_error' });
});
