/**
 * Typed key constructors for the configuration schema. Each returns a KeySpec: the data the
 * docs show (type, bounds, env variable, secret flag) and the `decode` that turns a raw YAML
 * or env value into the typed value. Because the value type is carried by `decode`, a nested
 * tree of keys fixes both the Config type (`Infer`) and how every key is read.
 */
import { isAbsolute, resolve } from 'node:path';

/** Why a raw value was refused: what the key expects, for the message naming the key. */
export class Invalid {
  constructor(readonly expected: string) {}
}

/** Turns one raw value (YAML scalar or sequence, or env string) into the key's value; `cwd` resolves relative paths. */
export type Decode<T> = (value: unknown, cwd: string) => T | Invalid;

interface Common<T> {
  /** The environment variable that overrides the YAML value. */
  readonly env: string;
  /** Never echoed in error messages; flagged in docs/configuration.md. */
  readonly secret: boolean;
  readonly decode: Decode<T>;
}

/** An integer within bounds. */
export interface IntKey extends Common<number> {
  readonly type: 'int';
  readonly min: number;
  readonly max: number;
}
/** A non-empty string, optionally nullable, matched or resolved (see `format`). */
export interface StringKey<T extends string | null = string | null> extends Common<T> {
  readonly type: 'string';
  readonly nullable: boolean;
  /** What the string must be beyond non-empty (e.g. "http(s) URL"), for the docs; '' for any. */
  readonly format: string;
}
/** One of a fixed set of strings. */
export interface EnumKey<T extends string = string> extends Common<T> {
  readonly type: 'enum';
  readonly values: readonly T[];
}
/** true or false. */
export interface BoolKey extends Common<boolean> {
  readonly type: 'bool';
}
/** A list of strings: a YAML sequence, or a comma-separated env value. */
export interface ListKey extends Common<string[]> {
  readonly type: 'list';
}

/** Any one key of the schema. */
export type KeySpec = IntKey | StringKey | EnumKey | BoolKey | ListKey;

/** A nested group of keys: the shape of the YAML files and of Config alike. */
export interface KeyTree {
  readonly [name: string]: KeySpec | KeyTree;
}

/** The typed value a key decodes to. */
export type ValueOf<K> = K extends { decode: (...args: never[]) => infer R } ? Exclude<R, Invalid> : never;

/** The configuration object a key tree describes: every key replaced by its value type. */
export type Infer<S> = S extends KeySpec ? ValueOf<S> : { -readonly [K in keyof S]: Infer<S[K]> };

/** Every key of a tree by its dotted name, e.g. `'server.controlPort'`. */
export type KeyPath<S, P extends string = ''> = {
  [K in keyof S & string]: S[K] extends KeySpec ? `${P}${K}` : KeyPath<S[K], `${P}${K}.`>;
}[keyof S & string];

/** Whether a node of a key tree is a key (rather than a group of keys). */
export function isKey(node: KeySpec | KeyTree): node is KeySpec {
  return typeof node.decode === 'function';
}

/** The keys of a tree in declaration order, each with its dotted name. */
export function keysOf(tree: KeyTree, prefix = ''): [string, KeySpec][] {
  return Object.entries(tree).flatMap(([name, node]) =>
    isKey(node) ? [[prefix + name, node] as [string, KeySpec]] : keysOf(node, `${prefix}${name}.`),
  );
}

/** An integer from `min` to `max`; env values are decimal digits. */
export function int(env: string, min: number, max: number): IntKey {
  const decode: Decode<number> = (value) => {
    const n = typeof value === 'string' && /^-?\d+$/.test(value.trim()) ? Number(value) : value;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) return new Invalid(`an integer from ${min} to ${max}`);
    return n;
  };
  return { type: 'int', env, min, max, secret: false, decode };
}

/** true or false (the env strings `true`/`false`). */
export function bool(env: string): BoolKey {
  const decode: Decode<boolean> = (value) => {
    if (value === true || value === 'true') return true;
    if (value === false || value === 'false') return false;
    return new Invalid('true or false');
  };
  return { type: 'bool', env, secret: false, decode };
}

/** One of `values`; the Config type is their union unless a wider `T` is given. */
export function oneOf<const T extends string>(env: string, values: readonly T[]): EnumKey<T> {
  const decode: Decode<T> = (value) =>
    typeof value === 'string' && (values as readonly string[]).includes(value) ? (value as T) : new Invalid(`one of ${values.join(', ')}`);
  return { type: 'enum', env, values, secret: false, decode };
}

/** Options of `list`. */
export interface ListOptions {
  secret?: boolean;
  /** Every entry must match, or the key fails expecting `expected`. */
  each?: { pattern: RegExp; expected: string };
}

/** A list of non-empty strings: a YAML sequence, or comma-separated in env (blanks dropped). */
export function list(env: string, { secret = false, each }: ListOptions = {}): ListKey {
  const decode: Decode<string[]> = (value) => {
    const items =
      typeof value === 'string'
        ? value
            .split(',')
            .map((v) => v.trim())
            .filter(Boolean)
        : value;
    if (!Array.isArray(items) || !items.every((v) => typeof v === 'string' && v !== '')) return new Invalid('a list of strings');
    if (each && !items.every((v: string) => each.pattern.test(v))) return new Invalid(each.expected);
    return items as string[];
  };
  return { type: 'list', env, secret, decode };
}

/** Options of `str`. */
export interface StrOptions {
  secret?: boolean;
  /** The value must match, or the key fails expecting `expected`. */
  match?: { pattern: RegExp; expected: string };
  /** The value's final form, e.g. a relative path made absolute against `cwd`. */
  finish?: (value: string, cwd: string) => string;
  /** For the docs: what the string is (see StringKey.format). */
  format?: string;
}

/** A non-empty string (whitespace alone is refused). */
export function str(env: string, { secret = false, match, finish, format = '' }: StrOptions = {}): StringKey<string> {
  const decode: Decode<string> = (value, cwd) => {
    if (typeof value !== 'string' || value.trim() === '') return new Invalid('a non-empty string');
    if (match && !match.pattern.test(value)) return new Invalid(match.expected);
    return finish ? finish(value, cwd) : value;
  };
  return { type: 'string', env, nullable: false, format, secret, decode };
}

/** The same key, where YAML `null` or an empty string (e.g. `DATABASE_URL=`) means null. */
export function nullable<T extends string>(key: StringKey<T>): StringKey<T | null> {
  const decode: Decode<T | null> = (value, cwd) => (value === null || value === '' ? null : key.decode(value, cwd));
  return { ...key, nullable: true, decode };
}

const absolute = (value: string, cwd: string) => (isAbsolute(value) ? value : resolve(cwd, value));
const HTTP_URL = /^https?:\/\/[^\s]+$/;

/** An http(s) URL. */
export const url = (env: string): StringKey<string> =>
  str(env, { match: { pattern: HTTP_URL, expected: 'an http(s) URL' }, format: 'http(s) URL' });

/** A file or folder path, made absolute against the working folder. */
export const path = (env: string): StringKey<string> => str(env, { finish: absolute, format: 'path (relative to the working folder)' });

/** An http(s) URL kept as it is, or else a path made absolute against the working folder. */
export const pathOrUrl = (env: string): StringKey<string> =>
  str(env, { finish: (v, cwd) => (/^https?:\/\//.test(v) ? v : absolute(v, cwd)), format: 'path or http(s) URL' });
