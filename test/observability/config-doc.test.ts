import { cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { OTHER_ENV, renderConfigurationDoc } from '../../scripts/gen-config-doc.js';
import { SCHEMA } from '../../src/config/schema.js';
import { packageRoot } from '../../src/lib/package-root.js';
import { tempDir } from '../helpers/config.js';

const root = packageRoot();
const committed = () => readFileSync(join(root, 'docs', 'configuration.md'), 'utf8');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

test('docs/configuration.md is what `npm run docs:config` generates now', (t) => {
  t.is(committed(), renderConfigurationDoc(root), 'stale: run `npm run docs:config` and commit docs/configuration.md');
});

test('the check catches a stale page: a changed default or comment changes the output', (t) => {
  const copy = tempDir('cynode-config-doc-');
  mkdirSync(join(copy, 'config'));
  const yaml = readFileSync(join(root, 'config', 'default.yaml'), 'utf8');
  writeFileSync(join(copy, 'config', 'default.yaml'), yaml.replace('maxBodyBytes: 1048576', 'maxBodyBytes: 2097152'));
  const changed = renderConfigurationDoc(copy);
  t.not(changed, committed());
  t.true(changed.includes('| `server.maxBodyBytes` | `CYNODE_MAX_BODY_BYTES` | integer | 1024 – 104857600 | `2097152` |'));
  cpSync(join(root, 'config', 'default.yaml'), join(copy, 'config', 'default.yaml'));
  t.is(renderConfigurationDoc(copy), committed(), 'the same inputs give the same page');
});

test('every schema key has a row with its env var, bounds, default and a description; secrets are flagged', (t) => {
  const doc = committed();
  for (const [key, spec] of Object.entries(SCHEMA)) {
    const row = doc.split('\n').find((l) => l.startsWith(`| \`${key}\` |`));
    t.truthy(row, key);
    const cells = row!.split(' | ');
    t.is(cells[1], `\`${spec.env}\``, key);
    if (spec.type === 'int') t.is(cells[3], `${spec.min} – ${spec.max}`, key);
    t.not(cells[4], '', `${key} has a default`);
    t.is(cells[5], 'secret' in spec && spec.secret ? 'yes' : '', `${key} secret flag`);
    t.true(cells[6]!.replace(/\s*\|$/, '').length > 3, `${key} has a description`);
  }
  for (const secret of ['DATABASE_URL', 'CYNODE_ADMIN_TOKEN', 'CYNODE_MASTER_KEY', 'CYNODE_BUNDLE_TOKEN']) {
    t.regex(doc, new RegExp(`\\| \`${secret}\` \\|[^\\n]*\\| yes \\|`), secret);
  }
});

test('every CYNODE_* variable the code reads is documented', (t) => {
  const documented = new Set([...Object.values(SCHEMA).map((s) => s.env), ...OTHER_ENV.map((e) => e.env)]);
  const read = new Set<string>();
  for (const file of sourceFiles(join(root, 'src'))) {
    for (const m of readFileSync(file, 'utf8').matchAll(/\bCYNODE_[A-Z0-9_]*[A-Z0-9]\b/g)) read.add(m[0]);
  }
  t.true(read.size > 60);
  const missing = [...read].filter((name) => !documented.has(name));
  t.deepEqual(missing, [], 'read by src/ but not in docs/configuration.md');
});
