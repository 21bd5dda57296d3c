import { loadPolicy, type LoadedPolicy } from '@open-policy-agent/opa-wasm';
import { GatewayError } from '../errors/index.js';
import type { Logger } from '../logging/index.js';
import { type Bundle, parseBundle } from './bundle.js';
import { BundleError, type BundleErrorCode } from './errors.js';
import { errorMessage } from '../lib/error-message.js';

/** What every entrypoint returns (docs/policy-input.md); extra fields pass through. */
export interface Decision {
  allow: boolean;
  reasons: string[];
  [field: string]: unknown;
}

/** The bundle currently deciding. */
export interface ActiveBundle {
  revision: string;
  digest: string;
  source: string;
  entrypoints: string[];
  activatedAt: Date;
}

/** What status and readiness report about bundles. */
export interface BundleStatus {
  active: ActiveBundle | undefined;
  lastSuccessAt: Date | undefined;
  lastError: { code: BundleErrorCode; message: string; source: string; at: Date } | undefined;
}

/** Evaluates Wasm-compiled policy; knows nothing of HTTP, so every role and the final gate share it. */
export interface PolicyEngine {
  /**
   * Reads (through `read`), parses, instantiates and checks a bundle, then swaps it in
   * atomically. On any failure the previous bundle stays active and the error is recorded
   * in status and rethrown as a BundleError.
   */
  activate(source: string, read: () => Promise<Buffer>): Promise<ActiveBundle>;
  /**
   * Evaluates one entrypoint; fails closed (throws) on no bundle, undefined or malformed results.
   * `inputJson`, when the caller already holds it, is the input's JSON text (the same value):
   * the module reads it instead of a fresh serialisation.
   */
  evaluate(entrypoint: string, input: unknown, inputJson?: string): { decision: Decision; revision: string };
  /**
   * Replaces the runtime data layered over the bundle's data as `data.runtime` (kill switch,
   * preferences); the next evaluation sees it, no rebuild needed. Survives bundle swaps.
   */
  setRuntimeData(runtime: Record<string, unknown>): void;
  /** Records a failure to fetch a bundle (a source that could not even produce bytes). */
  recordFailure(source: string, error: BundleError): void;
  /** Calls `listener` after every successful activation; returns the unsubscribe function. */
  onActivate(listener: (info: ActiveBundle) => void): () => void;
  /** Calls `listener` after every refused bundle or failed fetch; returns the unsubscribe function. */
  onRefuse(listener: (error: BundleError, source: string) => void): () => void;
  /** The active bundle's archive exactly as loaded (for the bundle service), with its info. */
  activeArchive(): { archive: Buffer; info: ActiveBundle } | undefined;
  /** The active bundle's data (without runtime data), for data the gateway itself reads (price table). */
  bundleData(): { data: Record<string, unknown>; revision: string } | undefined;
  status(): BundleStatus;
}

interface Loaded {
  info: ActiveBundle;
  policy: LoadedPolicy;
  archive: Buffer;
  data: Record<string, unknown>;
}

/** Dependencies of the engine. */
export interface PolicyEngineDeps {
  logger: Logger;
  /** Entrypoints every bundle must provide. */
  required: readonly string[];
  /**
   * Checks a parsed bundle before it is instantiated (signature verification); throws a
   * BundleError to refuse it.
   */
  verify?: (bundle: Bundle) => void | Promise<void>;
  /** Checks the instantiated module (host builtins); throws a BundleError to refuse it. */
  inspect?: (policy: LoadedPolicy) => void;
  now?: () => Date;
}

const utf8 = new TextEncoder();

/** Creates the policy engine. No bundle is active until `activate` succeeds. */
export function createPolicyEngine(deps: PolicyEngineDeps): PolicyEngine {
  const log = deps.logger.child({ component: 'policy' });
  const now = deps.now ?? (() => new Date());
  let current: Loaded | undefined;
  let lastSuccessAt: Date | undefined;
  let lastError: BundleStatus['lastError'];
  let runtime: Record<string, unknown> = {};
  const listeners = new Set<(info: ActiveBundle) => void>();
  const refusals = new Set<(error: BundleError, source: string) => void>();
  const fail = (e: BundleError, source: string) => {
    lastError = { code: e.code, message: e.message, source, at: now() };
    log.error({ code: e.code, source, err: e.message, keptRevision: current?.info.revision }, 'policy bundle refused');
    for (const listener of refusals) listener(e, source);
  };

  return {
    async activate(source, read) {
      try {
        const archive = await readArchive(source, read);
        const bundle = parseBundle(archive);
        await deps.verify?.(bundle);
        const policy = await instantiate(bundle, runtime);
        deps.inspect?.(policy);
        checkEntrypoints(policy, bundle, deps.required);
        const info: ActiveBundle = {
          revision: bundle.manifest.revision,
          digest: bundle.digest,
          source,
          entrypoints: Object.keys(policy.entrypoints as Record<string, number>).sort(),
          activatedAt: now(),
        };
        current = { info, policy, archive, data: bundle.data };
        lastSuccessAt = info.activatedAt;
        log.info({ revision: info.revision, digest: info.digest, source }, 'policy bundle activated');
        for (const listener of listeners) listener(info);
        return info;
      } catch (err) {
        const e = err instanceof BundleError ? err : new BundleError('bundle_unreadable', errorMessage(err));
        fail(e, source);
        throw e;
      }
    },
    evaluate(entrypoint, input, inputJson) {
      if (!current) throw new GatewayError('bundle_unavailable', 'no policy bundle is active');
      // opa-wasm takes an ArrayBuffer as JSON text; only an object input, which it never skips as falsy.
      const given = inputJson !== undefined && typeof input === 'object' && input !== null ? utf8.encode(inputJson).buffer : input;
      return { decision: evaluateOn(current.policy, entrypoint, given), revision: current.info.revision };
    },
    recordFailure(source, error) {
      fail(error, source);
    },
    onActivate(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    onRefuse(listener) {
      refusals.add(listener);
      return () => refusals.delete(listener);
    },
    setRuntimeData(next) {
      runtime = next;
      if (current) setLayeredData(current.policy, current.data, runtime);
    },
    activeArchive() {
      return current && { archive: current.archive, info: current.info };
    },
    bundleData() {
      return current && { data: current.data, revision: current.info.revision };
    },
    status() {
      return { active: current?.info, lastSuccessAt, lastError };
    },
  };
}

// Runtime data lives under `data.runtime`, outside every bundle root, so it can never
// overwrite what the security team shipped; it replaces only its own subtree.
function setLayeredData(policy: LoadedPolicy, bundleData: Record<string, unknown>, runtime: Record<string, unknown>): void {
  policy.setData({ ...bundleData, runtime });
}

async function readArchive(source: string, read: () => Promise<Buffer>): Promise<Buffer> {
  try {
    return await read();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const hint = code === 'ENOENT' ? ' (build it with `cynode-gateway policy build`)' : '';
    throw new BundleError('bundle_unreadable', `cannot read bundle ${source}: ${code ?? (err as Error).message}${hint}`);
  }
}

// Data is set once, already layered with the runtime data, so the default-deny check below
// sees exactly the data the bundle will decide with.
async function instantiate(bundle: Bundle, runtime: Record<string, unknown>): Promise<LoadedPolicy> {
  let policy: LoadedPolicy;
  try {
    policy = await loadPolicy(bundle.wasm);
  } catch (err) {
    throw new BundleError('wasm_invalid', `policy.wasm does not load: ${errorMessage(err)}`);
  }
  try {
    setLayeredData(policy, bundle.data, runtime);
  } catch (err) {
    throw new BundleError('data_invalid', `bundle data rejected by the policy module: ${String(err)}`);
  }
  return policy;
}

// Every required entrypoint must exist and, asked about an empty input, must answer with a
// well-formed deny: a bundle that allows the empty request is not default-deny and is refused.
function checkEntrypoints(policy: LoadedPolicy, bundle: Bundle, required: readonly string[]): void {
  const available = policy.entrypoints as Record<string, number>;
  const missing = required.filter((e) => !(e in available));
  if (missing.length > 0) {
    throw new BundleError('entrypoint_missing', `bundle ${bundle.manifest.revision} lacks entrypoints: ${missing.join(', ')}`);
  }
  for (const entrypoint of required) {
    let decision: Decision;
    try {
      decision = evaluateOn(policy, entrypoint, {});
    } catch (err) {
      throw new BundleError('wasm_invalid', `${entrypoint} fails on an empty input: ${(err as Error).message}`);
    }
    if (decision.allow) {
      throw new BundleError('bundle_not_default_deny', `${entrypoint} allows an empty input; policies must deny by default`);
    }
  }
}

function evaluateOn(policy: LoadedPolicy, entrypoint: string, input: unknown): Decision {
  let resultSet: unknown;
  try {
    resultSet = policy.evaluate(input, entrypoint);
  } catch (err) {
    throw new GatewayError('policy_evaluation_failed', `evaluating ${entrypoint} failed: ${errorMessage(err)}`);
  }
  const first = Array.isArray(resultSet) ? (resultSet[0] as { result?: unknown } | undefined) : undefined;
  if (!first || !('result' in first)) {
    throw new GatewayError('policy_evaluation_failed', `${entrypoint} is undefined for this input`);
  }
  const result = first.result as Partial<Decision> | null;
  if (
    typeof result !== 'object' ||
    result === null ||
    typeof result.allow !== 'boolean' ||
    !Array.isArray(result.reasons) ||
    !result.reasons.every((r) => typeof r === 'string')
  ) {
    throw new GatewayError('policy_evaluation_failed', `${entrypoint} returned a malformed decision`);
  }
  return result as Decision;
}
