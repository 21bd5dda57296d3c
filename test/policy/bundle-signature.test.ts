import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import pino from 'pino';
import { packageRoot } from '../../src/lib/package-root.js';
import {
  buildBundle,
  BundleError,
  createPolicyEngine,
  createSignatureCheck,
  loadVerificationKeys,
  parseBundle,
  REQUIRED_ENTRYPOINTS,
  verifyBundleSignature,
} from '../../src/policy/index.js';
import { tempDir } from '../helpers/config.js';
import { tarFromFiles } from '../helpers/tar-writer.js';

interface Signer {
  alg: string;
  keyFile: string;
  /** The verification entry: public PEM, or the HMAC secret. */
  verify: string;
}

const dir = tempDir('cynode-sign-');
function signer(alg: 'RS256' | 'ES256' | 'HS256'): Signer {
  const keyFile = join(dir, `${alg}.key`);
  if (alg === 'HS256') {
    const secret = randomBytes(32).toString('base64url');
    writeFileSync(keyFile, secret);
    return { alg, keyFile, verify: secret };
  }
  const pair = alg === 'RS256' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  writeFileSync(keyFile, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  return { alg, keyFile, verify: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

const signers = { RS256: signer('RS256'), ES256: signer('ES256'), HS256: signer('HS256') };
const keysYaml = (entries: Record<string, { alg: string; key: string }>) =>
  Object.entries(entries)
    .map(
      ([id, e]) =>
        `${id}:\n  algorithm: ${e.alg}\n  key: |-\n${e.key
          .trim()
          .split('\n')
          .map((l) => `    ${l}`)
          .join('\n')}\n`,
    )
    .join('');

/** The real policies, built and signed by the pinned `opa build`. */
async function signedBundle(s: Signer, keyId: string): Promise<Map<string, Buffer>> {
  const out = join(tempDir(), 'b.tar.gz');
  await buildBundle({
    policiesDir: join(packageRoot(), 'policies'),
    out,
    entrypoints: REQUIRED_ENTRYPOINTS,
    revision: `signed-${s.alg}`,
    signing: { keyFile: s.keyFile, algorithm: s.alg, keyId },
  });
  return new Map(parseBundle(readFileSync(out)).files);
}

const bundles = new Map<string, Map<string, Buffer>>();
test.before(async () => {
  for (const s of Object.values(signers)) bundles.set(s.alg, await signedBundle(s, `key-${s.alg}`));
});

/** The Rego files of `policies/` a built bundle carries (tests stay out of it). */
const policyFiles = (): string[] => {
  const root = join(packageRoot(), 'policies');
  return (readdirSync(root, { recursive: true }) as string[]).filter((f) => f.endsWith('.rego') && !f.endsWith('_test.rego'));
};

const keysFor = (alg: keyof typeof signers, id = `key-${alg}`) =>
  loadVerificationKeys(keysYaml({ [id]: { alg, key: signers[alg].verify } }));
const refusal = async (t: import('ava').ExecutionContext, files: ReadonlyMap<string, Buffer>, keys: Awaited<ReturnType<typeof keysFor>>) =>
  (await t.throwsAsync(() => verifyBundleSignature(files, keys), { instanceOf: BundleError })).code;

for (const alg of ['RS256', 'ES256', 'HS256'] as const) {
  test(`a bundle signed ${alg} by opa build verifies`, async (t) => {
    const result = await verifyBundleSignature(bundles.get(alg)!, await keysFor(alg));
    t.is(result.keyId, `key-${alg}`);
    // Every policy file is signed, with the manifest, the merged data and the compiled module.
    t.deepEqual(result.files.sort(), ['.manifest', ...policyFiles(), 'data.json', 'policy.wasm'].sort());
  });
}

test('one tampered byte in policy.wasm is a digest mismatch', async (t) => {
  const files = new Map(bundles.get('ES256')!);
  const wasm = Buffer.from(files.get('policy.wasm')!);
  wasm[wasm.length - 1] = wasm[wasm.length - 1]! ^ 1;
  files.set('policy.wasm', wasm);
  t.is(await refusal(t, files, await keysFor('ES256')), 'signature_hash_mismatch');
});

test('data.json is hashed from its canonical form: re-serialised verifies, a changed value does not', async (t) => {
  const files = new Map(bundles.get('RS256')!);
  const data = JSON.parse(files.get('data.json')!.toString()) as {
    config: { register: { admission: { labels: Record<string, boolean> } } };
  };
  const reordered = JSON.stringify(Object.fromEntries(Object.entries(data).reverse()), null, 3);
  files.set('data.json', Buffer.from(reordered));
  const keys = await keysFor('RS256');
  await t.notThrowsAsync(() => verifyBundleSignature(files, keys));
  data.config.register.admission.labels.root_access = true;
  files.set('data.json', Buffer.from(JSON.stringify(data)));
  t.is(await refusal(t, files, await keysFor('RS256')), 'signature_hash_mismatch');
});

test('a missing or an extra file breaks the file list', async (t) => {
  const keys = await keysFor('ES256');
  const removed = new Map(bundles.get('ES256')!);
  removed.delete('cynode/register/register.rego');
  t.is(await refusal(t, removed, keys), 'signature_files_mismatch');
  const extra = new Map(bundles.get('ES256')!);
  extra.set('cynode/backdoor.rego', Buffer.from('package cynode.backdoor\n'));
  t.is(await refusal(t, extra, keys), 'signature_files_mismatch');
});

test('a wrong key, an unknown key id and a wrong algorithm are each refused with their code', async (t) => {
  const files = bundles.get('ES256')!;
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
  t.is(await refusal(t, files, await loadVerificationKeys(keysYaml({ 'key-ES256': { alg: 'ES256', key: other } }))), 'signature_invalid');
  t.is(
    await refusal(
      t,
      files,
      await loadVerificationKeys(keysYaml({ someone: { alg: 'ES256', key: other }, else: { alg: 'ES256', key: other } })),
    ),
    'signature_key_unknown',
  );
  t.is(
    await refusal(
      t,
      bundles.get('RS256')!,
      await loadVerificationKeys(keysYaml({ 'key-RS256': { alg: 'ES256', key: signers.ES256.verify } })),
    ),
    'signature_algorithm_mismatch',
  );
  t.is(
    await refusal(t, files, await loadVerificationKeys(keysYaml({ 'key-ES256': { alg: 'HS256', key: 'guessed-secret' } }))),
    'signature_algorithm_mismatch',
  );
});

test('an unsigned bundle is refused unless unsigned bundles are allowed', async (t) => {
  const unsigned = new Map(bundles.get('ES256')!);
  unsigned.delete('.signatures.json');
  t.is(await refusal(t, unsigned, await keysFor('ES256')), 'signature_missing');

  const keysFile = join(tempDir(), 'keys.yaml');
  writeFileSync(keysFile, keysYaml({ 'key-ES256': { alg: 'ES256', key: signers.ES256.verify } }));
  const strict = createPolicyEngine({
    logger: pino({ level: 'silent' }),
    required: REQUIRED_ENTRYPOINTS,
    verify: createSignatureCheck({ allowUnsigned: false, verificationKeysFile: keysFile }),
  });
  const err = await t.throwsAsync(() => strict.activate('unsigned', async () => tarFromFiles(unsigned)), { instanceOf: BundleError });
  t.is(err.code, 'signature_missing');
  const signed = await strict.activate('signed', async () => tarFromFiles(bundles.get('ES256')!));
  t.is(signed.revision, 'signed-ES256');

  const lax = createPolicyEngine({
    logger: pino({ level: 'silent' }),
    required: REQUIRED_ENTRYPOINTS,
    verify: createSignatureCheck({ allowUnsigned: true, verificationKeysFile: keysFile }),
  });
  t.is((await lax.activate('unsigned', async () => tarFromFiles(unsigned))).revision, 'signed-ES256');
  const tampered = new Map(bundles.get('ES256')!);
  tampered.set('data.json', Buffer.from('{}'));
  const bad = await t.throwsAsync(() => lax.activate('tampered', async () => tarFromFiles(tampered)), { instanceOf: BundleError });
  t.is(bad.code, 'signature_hash_mismatch', 'a present signature must verify even when unsigned bundles are allowed');
});

test('key files: errors name the key id, never the key material', async (t) => {
  await t.throwsAsync(() => loadVerificationKeys('k1:\n  algorithm: ES256\n  key: not-a-pem-secret-material\n'), {
    message: /'k1' is not a valid ES256 public key/,
  });
  const err = await t.throwsAsync(() => loadVerificationKeys('k2:\n  algorithm: XX999\n  key: s3cr3t-value\n'));
  t.regex(err!.message, /'k2' has an unsupported algorithm/);
  t.false(err!.message.includes('s3cr3t-value'));
  await t.throwsAsync(() => loadVerificationKeys('k3:\n  algorithm: HS256\n'), { message: /'k3' has no key/ });
});
