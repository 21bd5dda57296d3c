import { readFile } from 'node:fs/promises';
import { gunzipSync, gzipSync } from 'node:zlib';
import test from 'ava';
import { BundleError, parseBundle, REQUIRED_ENTRYPOINTS } from '../../src/policy/index.js';
import { ensureBundle } from '../helpers/bundle.js';
import { tarGz as tar } from '../helpers/tar-writer.js';

const manifest = JSON.stringify({ revision: 'r1', roots: [''], wasm: [{ entrypoint: 'a/b', module: '/policy.wasm' }] });

function refusal(t: import('ava').ExecutionContext, archive: Buffer): string {
  const err = t.throws(() => parseBundle(archive), { instanceOf: BundleError });
  return err.code;
}

test('reads the bundle opa build writes: manifest, merged data, wasm module', async (t) => {
  const bundle = parseBundle(await readFile(await ensureBundle()));
  t.is(bundle.manifest.revision, 'test-suite');
  t.deepEqual(bundle.manifest.roots, ['cynode', 'config']);
  t.deepEqual(bundle.manifest.wasm.map((w) => w.entrypoint).sort(), [...REQUIRED_ENTRYPOINTS].sort());
  t.is(bundle.wasm.subarray(0, 4).toString('latin1'), '\0asm');
  const admission = (bundle.data as { config: { register: { admission: { labels: Record<string, boolean> } } } }).config.register.admission;
  t.true(admission.labels.cloud);
  t.true(bundle.files.has('.manifest'));
  t.false(
    [...bundle.files.keys()].some((p) => p.endsWith('_test.rego')),
    'tests stay out of the bundle',
  );
});

test('merges data files by directory, JSON and YAML alike', (t) => {
  const b = parseBundle(
    tar([
      { name: '/.manifest', body: manifest },
      { name: '/policy.wasm', body: '\0asm' },
      { name: '/data.json', body: '{"top": 1}' },
      { name: '/a/b/data.yaml', body: 'x: 1\n' },
      { name: '/a/data.json', body: '{"c": {"y": 2}}' },
    ]),
  );
  t.deepEqual(b.data, { top: 1, a: { b: { x: 1 }, c: { y: 2 } } });
});

test('refuses what is not a bundle, each with its code', (t) => {
  t.is(refusal(t, Buffer.from('plain text')), 'bundle_malformed');
  t.is(refusal(t, gzipSync(Buffer.from('not a tar archive at all'.repeat(40)))), 'bundle_malformed');
  t.is(refusal(t, tar([{ name: 'policy.wasm', body: 'x' }])), 'manifest_invalid');
  t.is(refusal(t, tar([{ name: '.manifest', body: '{' }])), 'manifest_invalid');
  t.is(refusal(t, tar([{ name: '.manifest', body: '{"revision": "r", "wasm": []}' }])), 'manifest_invalid');
  t.is(refusal(t, tar([{ name: '.manifest', body: '{"wasm": [{"entrypoint": "a", "module": "/policy.wasm"}]}' }])), 'manifest_invalid');
  t.is(refusal(t, tar([{ name: '.manifest', body: manifest }])), 'wasm_invalid');
  t.is(
    refusal(
      t,
      tar([
        { name: '.manifest', body: manifest },
        { name: 'policy.wasm', body: 'x' },
        { name: 'data.json', body: '[1,' },
      ]),
    ),
    'data_invalid',
  );
  t.is(
    refusal(
      t,
      tar([
        { name: '.manifest', body: manifest },
        { name: 'policy.wasm', body: 'x' },
        { name: 'data.json', body: '[1]' },
      ]),
    ),
    'data_invalid',
  );
});

test('refuses unsafe archives: path traversal, links, duplicate files, bad checksums', (t) => {
  const base = [
    { name: '.manifest', body: manifest },
    { name: 'policy.wasm', body: 'x' },
  ];
  t.is(refusal(t, tar([...base, { name: '../etc/passwd', body: 'x' }])), 'bundle_malformed');
  t.is(refusal(t, tar([...base, { name: 'link', body: '', type: '2' }])), 'bundle_malformed');
  t.is(refusal(t, tar([...base, { name: '/policy.wasm', body: 'y' }])), 'bundle_malformed');
  const archive = tar(base);
  const raw = Buffer.from(gunzipSync(archive));
  raw[0] = raw[0]! ^ 0xff;
  t.is(refusal(t, gzipSync(raw)), 'bundle_malformed');
});

test('refuses a gzip bomb past the size cap', (t) => {
  const huge = gzipSync(Buffer.alloc(65 * 1024 * 1024));
  t.is(refusal(t, huge), 'bundle_malformed');
});
