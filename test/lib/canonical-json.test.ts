import { createHash } from 'node:crypto';
import test from 'ava';
import { CanonicalText, canonicalJson } from '../../src/lib/canonical-json.js';
import { chainHash } from '../../src/lib/hash-chain.js';
import { seeded } from '../helpers/inputs/random.js';

// The form every stored hash was computed with, written the plain way: the fast serializer must
// give these bytes for every value, or stored chains stop verifying.
function reference(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => reference(v === undefined ? null : v)).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${reference(v)}`).join(',')}}`;
}

const KEYS = ['a', 'B', 'z', '10', '9', 'é', '\u{1F600}', 'ü', 'a b', '"q"', '\\', '__proto__', '', 'Z', 'ab', 'aa'];
const STRINGS = ['', 'x', 'line\nbreak', 'tab\t', '"quoted"', '\u2028', 'emoji \u{1F680}', '\u0001', 'ünïcödé', '</script>'];

function randomValue(r: ReturnType<typeof seeded>, depth: number): unknown {
  const kind = r.int(depth > 3 ? 7 : 10);
  switch (kind) {
    case 0:
      return null;
    case 1:
      return r.int(2) === 0;
    case 2:
      return [0, -0, 1, -1.5, 1e21, 1e-7, 123456789.123, Number.MAX_SAFE_INTEGER, NaN, Infinity][r.int(10)];
    case 3:
      return STRINGS[r.int(STRINGS.length)];
    case 4:
      return undefined;
    case 5:
      return [() => 1, new Date(0), Symbol('s')][r.int(3)];
    case 6:
      return KEYS[r.int(KEYS.length)];
    case 7: {
      const items = Array.from({ length: r.int(5) }, () => randomValue(r, depth + 1));
      if (items.length > 2 && r.int(4) === 0) delete items[1];
      return items;
    }
    default: {
      const out: Record<string, unknown> = {};
      for (let i = r.int(6); i > 0; i--) {
        Object.defineProperty(out, KEYS[r.int(KEYS.length)]!, {
          value: randomValue(r, depth + 1),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return out;
    }
  }
}

test('canonicalJson gives the stored form byte for byte on 20,000 random values', (t) => {
  const r = seeded(13);
  for (let i = 0; i < 20_000; i++) {
    const value = randomValue(r, 0);
    const expected = reference(value);
    if (canonicalJson(value) !== expected) {
      t.fail(`value #${i}: ${canonicalJson(value)} !== ${expected}`);
      return;
    }
  }
  t.pass();
});

test('canonicalJson sorts keys at every level and drops undefined members', (t) => {
  t.is(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: undefined }], c: null } }), '{"a":{"c":null,"d":[1,{"y":2}]},"b":1}');
  t.is(canonicalJson([undefined, () => 1]), '[null,null]');
  t.is(canonicalJson(undefined), 'null');
  t.throws(() => canonicalJson({ n: 1n }), { instanceOf: TypeError });
});

test('CanonicalText is written as it is, so a value serialised once hashes the same as the value', (t) => {
  const input = { subject: { id: 'w1', labels: ['b', 'a'] }, action: 'register' };
  const once = canonicalJson(input);
  const record = { path: 'cynode/register/decision', input };
  t.is(canonicalJson({ ...record, input: new CanonicalText(once) }), canonicalJson(record));
  const hash = (v: unknown) => createHash('sha256').update(canonicalJson(v)).digest('hex');
  t.is(hash({ ...record, input: new CanonicalText(once) }), hash(record));
});

test('chainHash is SHA-256 over the previous hash, a newline and the canonical record, as stored chains were hashed', (t) => {
  const prev = 'ab'.repeat(32);
  const record = { z: 'ünï', a: [1, { y: null, x: 'q' }] };
  const expected = createHash('sha256').update(prev).update('\n').update(reference(record)).digest('hex');
  t.is(chainHash(prev, record), expected);
});
