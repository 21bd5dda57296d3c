import test from 'ava';
import { StartupError } from '../../src/lib/startup-error.js';
import { parseMcpConfig } from '../../src/mcp/index.js';

test('parseMcpConfig: upstreams parsed, stdioEnv split at the first =', (t) => {
  const parsed = parseMcpConfig({
    upstreams: ['docs=https://docs.internal/mcp', 'files=stdio:node server.js'],
    stdioEnv: ['TOKEN=a=b', 'EMPTY='],
  });
  t.deepEqual(
    parsed.upstreams.map((u) => [u.name, u.kind]),
    [
      ['docs', 'http'],
      ['files', 'stdio'],
    ],
  );
  t.deepEqual(parsed.stdioEnv, { TOKEN: 'a=b', EMPTY: '' });
  t.deepEqual(parseMcpConfig({ upstreams: [], stdioEnv: [] }), { upstreams: [], stdioEnv: {} });
});

test('parseMcpConfig: a mistake is a StartupError naming the key, never a stdio value', (t) => {
  const upstream = t.throws(() => parseMcpConfig({ upstreams: ['docs=ftp://x/mcp'], stdioEnv: [] }), { instanceOf: StartupError })!;
  t.regex(upstream.message, /^mcp\.upstreams: /);
  t.regex(
    t.throws(() => parseMcpConfig({ upstreams: ['a=http://x/mcp', 'a=http://y/mcp'], stdioEnv: [] }))!.message,
    /'a' is listed twice/,
  );
  const env = t.throws(() => parseMcpConfig({ upstreams: [], stdioEnv: ['secret-without-name'] }), { instanceOf: StartupError })!;
  t.regex(env.message, /^mcp\.stdioEnv: /);
  t.false(env.message.includes('secret-without-name'));
});
