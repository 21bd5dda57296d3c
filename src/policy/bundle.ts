import { createHash } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { BundleError } from './errors.js';
import { readTarGz, TarError } from './tar.js';

/** The `.manifest` fields the gateway relies on. */
export interface Manifest {
  revision: string;
  roots: string[];
  wasm: { entrypoint: string; module: string }[];
  rego_version?: number;
}

/** A parsed OPA bundle: what `opa build -t wasm` wrote, ready to instantiate. */
export interface Bundle {
  manifest: Manifest;
  /** The compiled policy module named by the manifest. */
  wasm: Buffer;
  /** Every data.json / data.yaml merged at the path of its directory. */
  data: Record<string, unknown>;
  /** Every file in the archive by normalised path (for signatures and serving). */
  files: ReadonlyMap<string, Buffer>;
  /** SHA-256 of the archive bytes, hex: identifies exactly what is running. */
  digest: string;
}

/** Bundles larger than this (uncompressed) are refused. */
export const MAX_BUNDLE_BYTES = 64 * 1024 * 1024;

/**
 * Parses a gzipped OPA bundle: `.manifest`, data files merged by directory, and the single
 * Wasm module that holds every entrypoint. Throws BundleError with the failing part's code.
 */
export function parseBundle(archive: Buffer): Bundle {
  let entries;
  try {
    entries = readTarGz(archive, MAX_BUNDLE_BYTES);
  } catch (err) {
    if (err instanceof TarError) throw new BundleError('bundle_malformed', `bundle archive: ${err.message}`);
    throw err;
  }
  const files = new Map<string, Buffer>();
  for (const e of entries) {
    if (files.has(e.path)) throw new BundleError('bundle_malformed', `duplicate file ${e.path}`);
    files.set(e.path, e.data);
  }
  const manifest = readManifest(files.get('.manifest'));
  const modules = new Set(manifest.wasm.map((w) => normalise(w.module)));
  if (modules.size !== 1) {
    throw new BundleError('wasm_invalid', `expected one Wasm module for all entrypoints, found ${modules.size}`);
  }
  const [modulePath] = [...modules] as [string];
  const wasm = files.get(modulePath);
  if (!wasm) throw new BundleError('wasm_invalid', `manifest names ${modulePath}, which the bundle lacks`);
  return {
    manifest,
    wasm,
    data: mergeData(files),
    files,
    digest: createHash('sha256').update(archive).digest('hex'),
  };
}

function normalise(path: string): string {
  return path.replace(/^\/+/, '');
}

function readManifest(raw: Buffer | undefined): Manifest {
  if (!raw) throw new BundleError('manifest_invalid', 'bundle has no .manifest');
  let m: unknown;
  try {
    m = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new BundleError('manifest_invalid', '.manifest is not JSON');
  }
  const o = m as Partial<Manifest>;
  if (typeof o !== 'object' || o === null) throw new BundleError('manifest_invalid', '.manifest is not an object');
  if (typeof o.revision !== 'string' || o.revision === '') {
    throw new BundleError('manifest_invalid', '.manifest has no revision');
  }
  const wasm = Array.isArray(o.wasm) ? o.wasm : [];
  if (wasm.length === 0 || !wasm.every((w) => typeof w?.entrypoint === 'string' && typeof w?.module === 'string')) {
    throw new BundleError('manifest_invalid', '.manifest lists no Wasm entrypoints (build with `opa build -t wasm -e ...`)');
  }
  const roots = Array.isArray(o.roots) ? o.roots.filter((r): r is string => typeof r === 'string') : [''];
  return { revision: o.revision, roots, wasm, ...(o.rego_version !== undefined && { rego_version: o.rego_version }) };
}

function mergeData(files: ReadonlyMap<string, Buffer>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  const dataFiles = [...files.keys()].filter((p) => /(^|\/)data\.(json|ya?ml)$/.test(p)).sort();
  for (const path of dataFiles) {
    const text = files.get(path)!.toString('utf8');
    let value: unknown;
    try {
      value = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
    } catch (err) {
      throw new BundleError('data_invalid', `${path}: ${(err as Error).message.split('\n')[0]}`);
    }
    const segments = path.split('/').slice(0, -1);
    if (segments.length === 0) {
      if (!isObject(value)) throw new BundleError('data_invalid', `${path}: top-level data must be an object`);
      mergeInto(root, value, path);
      continue;
    }
    let node = root;
    for (const seg of segments.slice(0, -1)) {
      const next = node[seg] ?? (node[seg] = {});
      if (!isObject(next)) throw new BundleError('data_invalid', `${path}: conflicts with data at ${seg}`);
      node = next;
    }
    const last = segments[segments.length - 1]!;
    if (last in node && isObject(node[last]) && isObject(value)) mergeInto(node[last], value, path);
    else if (last in node) throw new BundleError('data_invalid', `${path}: conflicts with other data at ${segments.join('/')}`);
    else node[last] = value;
  }
  return root;
}

function mergeInto(target: Record<string, unknown>, source: Record<string, unknown>, path: string): void {
  for (const [key, value] of Object.entries(source)) {
    const existing = target[key];
    if (existing === undefined) target[key] = value;
    else if (isObject(existing) && isObject(value)) mergeInto(existing, value, path);
    else throw new BundleError('data_invalid', `${path}: key '${key}' is defined twice`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
