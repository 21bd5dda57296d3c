/**
 * JSON text already in canonical form (e.g. a decision's input, serialised once when it was
 * recorded): `canonicalJson` writes it as it is instead of walking the value again.
 */
export class CanonicalText {
  constructor(readonly text: string) {}
}

/**
 * JSON with object keys sorted at every level and no whitespace: the one byte form a value
 * hashes to, whatever order its keys were built or stored in (PostgreSQL jsonb reorders).
 * The form is fixed by the hashes already stored: an object is its own enumerable string keys
 * (a Date is `{}`), keys sorted by UTF-16 code unit, undefined members left out, undefined or a
 * function in an array or at the top written `null`, a function member `null`.
 */
export function canonicalJson(value: unknown): string {
  return typeof value === 'object' && value !== null ? objectJson(value) : (JSON.stringify(value) ?? 'null');
}

// Cleared by a value JSON.stringify would write differently (see canonicalJsonIfPlain).
let plain = true;

/**
 * `canonicalJson`, and whether the text is also what `JSON.stringify` would say of the value
 * up to key order: only plain objects, arrays, strings, finite numbers, booleans and null, no
 * undefined or function in an array. A parser of the text then sees the value itself.
 */
export function canonicalJsonIfPlain(value: unknown): { text: string; plain: boolean } {
  plain = typeof value === 'object' && value !== null;
  const text = canonicalJson(value);
  return { text, plain };
}

// String concatenation (V8 ropes) and one pass per object: no entry arrays, no maps, no joins.
function objectJson(value: object): string {
  if (value instanceof CanonicalText) return value.text;
  if (Array.isArray(value)) return arrayJson(value);
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) plain = false; // a Date, a Map, a class: toJSON or no own keys
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record).sort();
  let out = '{';
  let first = true;
  for (const key of keys) {
    const member = record[key];
    if (member === undefined) continue;
    out += `${first ? '' : ','}${quotedKey(key)}:${memberJson(member)}`;
    first = false;
  }
  return out + '}';
}

// Object keys repeat from value to value (the same schemas, the same records): their JSON is
// looked up rather than made again, a good part of the cost. Bounded: keys past the limit,
// or long ones, are quoted each time, as before.
const QUOTED = new Map<string, string>();
const QUOTED_MAX = 10_000;
const QUOTED_KEY_LENGTH = 64;

function quotedKey(key: string): string {
  let quoted = QUOTED.get(key);
  if (quoted === undefined) {
    quoted = JSON.stringify(key);
    if (QUOTED.size < QUOTED_MAX && key.length <= QUOTED_KEY_LENGTH) QUOTED.set(key, quoted);
  }
  return quoted;
}

function arrayJson(items: unknown[]): string {
  let out = '[';
  for (let i = 0; i < items.length; i++) {
    if (i > 0) out += ',';
    // A hole stays empty, as Array.prototype.map left it.
    if (!(i in items) || items[i] === undefined) plain = false;
    if (i in items) out += memberJson(items[i] === undefined ? null : items[i]);
  }
  return out + ']';
}

function memberJson(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object':
      return value === null ? 'null' : objectJson(value);
    case 'number':
      if (!Number.isFinite(value)) plain = false;
      return JSON.stringify(value);
    default:
      plain = false; // a function or symbol member: JSON.stringify leaves it out
      return JSON.stringify(value) ?? 'null';
  }
}
