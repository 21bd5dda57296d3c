import { createHash } from 'node:crypto';
import { parse as parseYaml } from 'yaml';

/** Hash algorithms OPA accepts in `.signatures.json`, mapped to Node's names. */
export const OPA_HASH_ALGORITHMS: Record<string, string> = {
  MD5: 'md5',
  'SHA-1': 'sha1',
  'SHA-224': 'sha224',
  'SHA-256': 'sha256',
  'SHA-384': 'sha384',
  'SHA-512': 'sha512',
  'SHA-512-224': 'sha512-224',
  'SHA-512-256': 'sha512-256',
};

/** Files OPA hashes from their parsed (canonical) form instead of their bytes. */
export function isStructuredDoc(path: string): boolean {
  const base = path.slice(path.lastIndexOf('/') + 1);
  return base === 'data.json' || base === 'data.yaml' || base === '.manifest' || base === '.signatures.json';
}

/**
 * The digest OPA computes for a bundle file: raw bytes for policy and Wasm; for structured
 * documents, the parsed value walked with object keys in byte order, `{`, `,`, `:`, `[`, `]`
 * between, and primitives as Go's JSON encoder writes them (numbers exactly as written).
 */
export function opaFileDigest(path: string, content: Buffer, algorithm: string): string {
  const nodeName = OPA_HASH_ALGORITHMS[algorithm];
  if (!nodeName) throw new Error(`unsupported hashing algorithm ${algorithm}`);
  const hash = createHash(nodeName);
  if (!isStructuredDoc(path)) return hash.update(content).digest('hex');
  const text = content.toString('utf8');
  const canonical = path.endsWith('.yaml') ? canonicalOf(parseYaml(text)) : new Canonicalizer(text).document();
  return hash.update(canonical).digest('hex');
}

// YAML carries no number lexemes worth keeping: OPA converts it to JSON through Go's
// encoder first, so numbers come out in Go's shortest form, which JS shares for finite values.
function canonicalOf(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalOf).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).sort(byteOrder);
    return `{${keys.map((k) => `${goString(k)}:${canonicalOf((value as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  if (typeof value === 'string') return goString(value);
  return JSON.stringify(value ?? null);
}

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** A JSON string as Go's encoder writes it with HTML escaping off (it still escapes U+2028/9). */
function goString(s: string): string {
  return JSON.stringify(s)
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/** A strict JSON reader that emits the canonical form directly, keeping number lexemes. */
class Canonicalizer {
  private i = 0;
  constructor(private readonly text: string) {}

  document(): string {
    const out = this.value();
    this.ws();
    if (this.i !== this.text.length) this.fail('trailing characters');
    return out;
  }

  private value(): string {
    this.ws();
    const c = this.text[this.i];
    if (c === '{') return this.object();
    if (c === '[') return this.array();
    if (c === '"') return goString(this.string());
    const m = /^(-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)/.exec(this.text.slice(this.i, this.i + 400));
    if (!m) this.fail('unexpected token');
    this.i += m![0].length;
    return m![0];
  }

  private object(): string {
    this.i++;
    const entries: [string, string][] = [];
    this.ws();
    if (this.text[this.i] === '}') {
      this.i++;
      return '{}';
    }
    for (;;) {
      this.ws();
      if (this.text[this.i] !== '"') this.fail('expected a key');
      const key = this.string();
      this.ws();
      if (this.text[this.i++] !== ':') this.fail('expected :');
      const value = this.value();
      const existing = entries.findIndex(([k]) => k === key);
      if (existing >= 0) entries.splice(existing, 1); // the last duplicate wins, as in Go
      entries.push([key, value]);
      this.ws();
      const sep = this.text[this.i++];
      if (sep === '}') break;
      if (sep !== ',') this.fail('expected , or }');
    }
    entries.sort(([a], [b]) => byteOrder(a, b));
    return `{${entries.map(([k, v]) => `${goString(k)}:${v}`).join(',')}}`;
  }

  private array(): string {
    this.i++;
    const items: string[] = [];
    this.ws();
    if (this.text[this.i] === ']') {
      this.i++;
      return '[]';
    }
    for (;;) {
      items.push(this.value());
      this.ws();
      const sep = this.text[this.i++];
      if (sep === ']') break;
      if (sep !== ',') this.fail('expected , or ]');
    }
    return `[${items.join(',')}]`;
  }

  private string(): string {
    // JSON strings may not hold raw control characters, so the grammar has to name them.
    // eslint-disable-next-line no-control-regex
    const m = /^"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/.exec(this.text.slice(this.i));
    if (!m) this.fail('bad string');
    this.i += m![0].length;
    return JSON.parse(m![0]) as string;
  }

  private ws(): void {
    while (this.i < this.text.length && ' \t\n\r'.includes(this.text[this.i]!)) this.i++;
  }

  private fail(why: string): never {
    throw new Error(`invalid JSON at offset ${this.i}: ${why}`);
  }
}
