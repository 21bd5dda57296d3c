import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { packageRoot } from '../lib/package-root.js';
import { ConfigError } from './errors.js';
import { Invalid, type KeySpec, keysOf } from './keys.js';
import { RULES } from './rules.js';
import { type Config, CONFIG_SCHEMA } from './schema.js';

/** Where configuration comes from; the CLI passes the real process values, tests their own. */
export interface ConfigSources {
  env: Record<string, string | undefined>;
  /** Base for relative paths in values, usually `process.cwd()`. */
  cwd: string;
  /** Folder with `default.yaml` (and optional `local.yaml`); defaults to the package's `config/`. */
  configDir?: string;
}

/** A raw value and where it came from (a file, or `env NAME`), for messages. */
type Raw = { value: unknown; from: string };

const KEYS = keysOf(CONFIG_SCHEMA);
const KEY_NAMES = new Set(KEYS.map(([key]) => key));
/** 'a.b.c' gives ['a', 'a.b']: the groups a key sits in. */
const groupsOf = (key: string) =>
  key
    .split('.')
    .slice(1)
    .map((_, i) => key.split('.', i + 1).join('.'));
const GROUP_NAMES = new Set(KEYS.flatMap(([key]) => groupsOf(key)));

/**
 * Reads the YAML layers and env overrides once, decodes every key of the schema, checks the
 * cross-key rules and returns a typed, frozen Config. Throws ConfigError naming the first
 * bad key (or the broken rule).
 */
export function loadConfig(sources: ConfigSources): Config {
  const raw = readLayers(sources);
  for (const [key, spec] of KEYS) {
    const fromEnv = sources.env[spec.env];
    if (fromEnv !== undefined) raw.set(key, { value: fromEnv, from: `env ${spec.env}` });
  }
  const config: Record<string, unknown> = {};
  for (const [key, spec] of KEYS) {
    const found = raw.get(key);
    if (!found) throw new ConfigError(`missing key '${key}': set it in config/default.yaml or ${spec.env}`);
    setAt(config, key, decode(key, spec, found, sources.cwd));
  }
  for (const rule of RULES) {
    const problem = rule.check(config as Config);
    if (problem !== null) throw new ConfigError(problem);
  }
  return deepFreeze(config as Config);
}

/** default.yaml, then local.yaml if present, then the file CYNODE_CONFIG names (which must exist). */
function readLayers(sources: ConfigSources): Map<string, Raw> {
  const configDir = sources.configDir ?? join(packageRoot(), 'config');
  const raw = new Map<string, Raw>();
  const files = [join(configDir, 'default.yaml'), join(configDir, 'local.yaml')];
  const extra = sources.env.CYNODE_CONFIG;
  if (extra) files.push(resolve(sources.cwd, extra));
  files.forEach((file, i) => {
    if (i === 0 || existsSync(file)) readLayer(file, raw);
    else if (i === 2) throw new ConfigError(`CYNODE_CONFIG names ${file}, which does not exist`);
  });
  return raw;
}

function readLayer(file: string, into: Map<string, Raw>): void {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const doc = parseDocument(text, { uniqueKeys: true });
  const problem = doc.errors[0];
  if (problem) throw new ConfigError(`${file}: invalid YAML: ${problem.message.split('\n')[0]}`);
  const tree: unknown = doc.toJS() ?? {};
  flatten(tree, '', file, into);
}

/** Records each schema key found in a YAML tree under its dotted name; any other key is an error. */
function flatten(node: unknown, prefix: string, file: string, into: Map<string, Raw>): void {
  if (node === null || typeof node !== 'object' || Array.isArray(node)) {
    throw new ConfigError(`${file}: '${prefix || '(top level)'}' must be a mapping of keys`);
  }
  for (const [name, value] of Object.entries(node)) {
    const key = prefix ? `${prefix}.${name}` : name;
    if (KEY_NAMES.has(key)) into.set(key, { value, from: file });
    else if (GROUP_NAMES.has(key)) flatten(value, key, file, into);
    else throw new ConfigError(`${file}: unknown key '${key}'`);
  }
}

function decode(key: string, spec: KeySpec, { value, from }: Raw, cwd: string): unknown {
  const decoded = spec.decode(value, cwd);
  if (!(decoded instanceof Invalid)) return decoded;
  const shown = spec.secret ? '(value hidden)' : JSON.stringify(value);
  throw new ConfigError(`invalid value for '${key}' (from ${from}): expected ${decoded.expected}, got ${shown}`);
}

function setAt(into: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.');
  const last = parts.pop()!;
  let node = into;
  for (const part of parts) node = (node[part] ??= {}) as Record<string, unknown>;
  node[last] = value;
}

function deepFreeze<T extends object>(o: T): T {
  for (const value of Object.values(o)) if (value && typeof value === 'object') deepFreeze(value);
  return Object.freeze(o);
}
