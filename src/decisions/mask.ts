/** What replaces a masked value in a stored decision. */
export const MASKED = '[MASKED]';

/**
 * A copy of `input` fit to store: every configured JSON pointer (RFC 6901, relative to the
 * input) that exists is replaced by MASKED and listed in `erased` (OPA's decision-log field),
 * and NUL characters, which PostgreSQL jsonb cannot hold, become U+FFFD.
 */
export function maskInput(input: unknown, pointers: readonly string[]): { input: unknown; erased: string[] } {
  const copy = sanitize(input);
  const erased: string[] = [];
  for (const pointer of pointers) {
    const parts = pointer
      .split('/')
      .slice(1)
      .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    if (parts.length === 0) continue;
    let node: unknown = copy;
    for (const part of parts.slice(0, -1)) {
      node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[part] : undefined;
    }
    const last = parts[parts.length - 1]!;
    if (node !== null && typeof node === 'object' && Object.prototype.hasOwnProperty.call(node, last)) {
      (node as Record<string, unknown>)[last] = MASKED;
      erased.push(pointer);
    }
  }
  return { input: copy, erased };
}

function sanitize(value: unknown): unknown {
  if (typeof value === 'string') return value.includes('\u0000') ? value.split('\u0000').join('\uFFFD') : value;
  if (Array.isArray(value)) return value.map(sanitize);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    // defineProperty, not assignment: a "__proto__" key in the input must stay plain data.
    for (const [k, v] of Object.entries(value)) {
      Object.defineProperty(out, sanitize(k) as string, { value: sanitize(v), enumerable: true, writable: true, configurable: true });
    }
    return out;
  }
  return value;
}
