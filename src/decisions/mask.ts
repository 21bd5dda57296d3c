import { canonicalJson, canonicalJsonIfPlain } from '../lib/canonical-json.js';

/** What replaces a masked value in a stored decision. */
export const MASKED = '[MASKED]';

/** A decision's input as the log keeps it: masked, storable, and serialised once. */
export interface StorableInput {
  /** The masked input; shares every part the masks did not touch with the caller's input. */
  input: unknown;
  /** Its canonical JSON (what the chain hashes and the row stores). */
  json: string;
  /** The masks that matched (OPA's decision-log `erased`). */
  erased: string[];
  /**
   * Whether `json` is exactly the caller's input (an object of plain JSON values, nothing masked
   * or replaced), so the policy can be given the text instead of serialising the input again.
   */
  exact: boolean;
}

/**
 * `maskInput`, serialised: the canonical JSON the decision log hashes and stores, computed once
 * when the decision is made. Nothing is copied but the objects on the way to a masked value;
 * NUL, which PostgreSQL jsonb cannot hold, is looked for in the serialised text (JSON writes it
 * as an escape), so the rare input that holds one pays for the full copy and no other does.
 */
export function storableInput(input: unknown, pointers: readonly string[]): StorableInput {
  const masked = maskPointers(input, pointers);
  const { text: json, plain } = canonicalJsonIfPlain(masked.input);
  if (!json.includes('\\u0000')) return { input: masked.input, json, erased: masked.erased, exact: plain && masked.erased.length === 0 };
  const clean = sanitize(masked.input);
  return { input: clean, json: canonicalJson(clean), erased: masked.erased, exact: false };
}

/**
 * A copy of `input` fit to store: every configured JSON pointer (RFC 6901, relative to the
 * input) that exists is replaced by MASKED and listed in `erased` (OPA's decision-log field),
 * and NUL characters, which PostgreSQL jsonb cannot hold, become U+FFFD. The caller's input is
 * never changed.
 */
export function maskInput(input: unknown, pointers: readonly string[]): { input: unknown; erased: string[] } {
  const { input: masked, erased } = storableInput(input, pointers);
  return { input: masked, erased };
}

const MISSING = Symbol('missing');
const parsed = new Map<string, string[]>();

function pointerParts(pointer: string): string[] {
  let parts = parsed.get(pointer);
  if (!parts) {
    parts = pointer
      .split('/')
      .slice(1)
      .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    parsed.set(pointer, parts);
  }
  return parts;
}

function maskPointers(input: unknown, pointers: readonly string[]): { input: unknown; erased: string[] } {
  let value = input;
  const erased: string[] = [];
  for (const pointer of pointers) {
    const parts = pointerParts(pointer);
    if (parts.length === 0) continue;
    const replaced = replaceAt(value, parts, 0);
    if (replaced === MISSING) continue;
    value = replaced;
    erased.push(pointer);
  }
  return { input: value, erased };
}

// Copy-on-write: the objects on the pointer's path are copied, everything beside them shared.
function replaceAt(node: unknown, parts: readonly string[], i: number): unknown {
  const key = parts[i]!;
  if (node === null || typeof node !== 'object' || !Object.prototype.hasOwnProperty.call(node, key)) return MISSING;
  const child = i === parts.length - 1 ? MASKED : replaceAt((node as Record<string, unknown>)[key], parts, i + 1);
  if (child === MISSING) return MISSING;
  const copy = Array.isArray(node) ? node.slice() : { ...node };
  // defineProperty, not assignment: a "__proto__" key must stay plain data.
  Object.defineProperty(copy, key, { value: child, enumerable: true, writable: true, configurable: true });
  return copy;
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
