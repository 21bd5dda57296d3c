import { createHash } from 'node:crypto';
import { GatewayError } from '../errors/index.js';
import { canonicalJson } from '../lib/canonical-json.js';

/** The capability report, with the field names docs/policy-input.md documents. */
export interface CapabilityReport {
  node_id: string;
  labels: string[];
  region?: string;
  /** The cloud the worker runs in (aws, gcp, ...). */
  provider?: string;
  inference_mode: 'provider_api' | 'ollama_remote' | 'ollama_local';
  supported_providers: string[];
  supported_models: string[];
  max_concurrency: number;
  rate_limits: { rpm?: number; tpm?: number };
  reachable_endpoints: string[];
}

/** One problem with one field of a report. */
export interface FieldError {
  field: string;
  message: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
const INFERENCE_MODES = ['provider_api', 'ollama_remote', 'ollama_local'] as const;
const KNOWN = new Set([
  'node_id',
  'labels',
  'region',
  'provider',
  'inference_mode',
  'supported_providers',
  'supported_models',
  'max_concurrency',
  'rate_limits',
  'reachable_endpoints',
]);

/**
 * Validates a capability report field by field and returns it normalised (optional lists
 * default to empty). Every problem is reported at once, each naming its field, in a 422
 * `capability_invalid` whose details list them.
 */
export function parseCapabilityReport(raw: unknown): CapabilityReport {
  const errors: FieldError[] = [];
  const fail = (field: string, message: string) => errors.push({ field, message });
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new GatewayError('capability_invalid', 'the capability report must be a JSON object', {
      errors: [{ field: '', message: 'must be an object' }],
    });
  }
  const r = raw as Record<string, unknown>;
  for (const key of Object.keys(r)) if (!KNOWN.has(key)) fail(key, 'is not a capability report field');

  const name = (field: string, required: boolean): string | undefined => {
    const v = r[field];
    if (v === undefined && !required) return undefined;
    if (typeof v !== 'string' || !NAME.test(v)) {
      fail(field, 'must be 1-128 letters, digits or _.:- starting with a letter or digit');
      return undefined;
    }
    return v;
  };
  const names = (field: string, max: number, pattern = NAME): string[] => {
    const v = r[field];
    if (v === undefined) return [];
    if (!Array.isArray(v) || v.length > max) {
      fail(field, `must be a list of at most ${max} names`);
      return [];
    }
    v.forEach((item, i) => {
      if (typeof item !== 'string' || !pattern.test(item)) fail(`${field}[${i}]`, 'must be a name of letters, digits or _.:-');
    });
    return [...new Set(v as string[])];
  };

  const node_id = name('node_id', true);
  const labels = names('labels', 64);
  if (r.labels === undefined) fail('labels', 'is required (a list, possibly empty)');
  const region = name('region', false);
  const provider = name('provider', false);
  const mode = r.inference_mode;
  if (typeof mode !== 'string' || !(INFERENCE_MODES as readonly string[]).includes(mode)) {
    fail('inference_mode', `must be one of ${INFERENCE_MODES.join(', ')}`);
  }
  const supported_providers = names('supported_providers', 32);
  const supported_models = names('supported_models', 256, /^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}$/);
  const max = r.max_concurrency ?? 1;
  if (!Number.isInteger(max) || (max as number) < 1 || (max as number) > 1024) fail('max_concurrency', 'must be an integer from 1 to 1024');
  const rate_limits = parseRateLimits(r.rate_limits, fail);
  const reachable_endpoints = parseEndpoints(r.reachable_endpoints, fail);

  if (errors.length > 0) {
    throw new GatewayError(
      'capability_invalid',
      `the capability report is invalid: ${errors.map((e) => `${e.field || 'report'} ${e.message}`).join('; ')}`,
      { errors },
    );
  }
  return {
    node_id: node_id!,
    labels,
    ...(region !== undefined && { region }),
    ...(provider !== undefined && { provider }),
    inference_mode: mode as CapabilityReport['inference_mode'],
    supported_providers,
    supported_models,
    max_concurrency: max as number,
    rate_limits,
    reachable_endpoints,
  };
}

/** A stable digest of a report, to tell a changed report from a repeated one. */
export function reportDigest(report: CapabilityReport): string {
  return createHash('sha256').update(canonicalJson(report)).digest('hex');
}

type Fail = (field: string, message: string) => void;

/** `rate_limits`: `{rpm?, tpm?}`, each a positive integer; problems go to `fail`. */
function parseRateLimits(raw: unknown, fail: Fail): { rpm?: number; tpm?: number } {
  const rate_limits: { rpm?: number; tpm?: number } = {};
  if (raw === undefined) return rate_limits;
  const rl = raw as Record<string, unknown>;
  if (rl === null || typeof rl !== 'object' || Array.isArray(rl)) {
    fail('rate_limits', 'must be an object {rpm, tpm}');
    return rate_limits;
  }
  for (const key of Object.keys(rl)) {
    const v = rl[key];
    if (key !== 'rpm' && key !== 'tpm') fail(`rate_limits.${key}`, 'is not a rate limit (rpm, tpm)');
    else if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > 1e9) fail(`rate_limits.${key}`, 'must be a positive integer');
    else rate_limits[key] = v as number;
  }
  return rate_limits;
}

/** `reachable_endpoints`: at most 64 http(s) URLs; problems go to `fail`. */
function parseEndpoints(raw: unknown, fail: Fail): string[] {
  const reachable_endpoints: string[] = [];
  if (raw === undefined) return reachable_endpoints;
  if (!Array.isArray(raw) || raw.length > 64) {
    fail('reachable_endpoints', 'must be a list of at most 64 URLs');
    return reachable_endpoints;
  }
  raw.forEach((item, i) => {
    if (typeof item !== 'string' || item.length > 512 || !isHttpUrl(item)) fail(`reachable_endpoints[${i}]`, 'must be an http(s) URL');
    else reachable_endpoints.push(item);
  });
  return reachable_endpoints;
}

function isHttpUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}
