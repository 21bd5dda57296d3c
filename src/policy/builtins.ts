import type { LoadedPolicy } from '@open-policy-agent/opa-wasm';
import { BundleError } from './errors.js';

/**
 * Builtins a Wasm module may import from the host: the ones the JS SDK implements exactly as
 * OPA does. Everything else the module needs must be compiled into the Wasm itself. Left out
 * on purpose: `sprintf` and `regex.split`, whose SDK versions differ from Go's.
 */
export const HOST_BUILTINS: ReadonlySet<string> = new Set(['json.is_valid', 'yaml.is_valid', 'yaml.marshal', 'yaml.unmarshal']);

/** The builtins a loaded module imports from the host, read from its `builtins` export. */
export function hostBuiltinsOf(policy: LoadedPolicy): string[] {
  const exports = (policy.wasmInstance as unknown as { exports: Record<string, (...a: number[]) => number> }).exports;
  const addr = exports.opa_json_dump!(exports.builtins!());
  const bytes = new Uint8Array(policy.mem.buffer, addr);
  const text = new TextDecoder().decode(bytes.subarray(0, bytes.indexOf(0)));
  return Object.keys(JSON.parse(text) as Record<string, number>).sort();
}

/**
 * Refuses, at load, a module that needs a host builtin the gateway does not implement
 * faithfully — so no decision ever fails with "not implemented" at evaluation time.
 */
export function checkBuiltins(policy: LoadedPolicy): void {
  const missing = hostBuiltinsOf(policy).filter((name) => !HOST_BUILTINS.has(name));
  if (missing.length > 0) {
    throw new BundleError('builtin_not_supported', `the policy needs builtins this host does not provide: ${missing.join(', ')}`);
  }
}
