import { GatewayError } from '../errors/index.js';
import { isTaskId, TASK_ID_MAX } from '../lib/ids.js';
import { isPreferenceKey, type PreferenceKey, preferenceProblem } from '../preferences/index.js';

/** What a job needs from the worker that runs it; every list may be empty. */
export interface Requirements {
  labels: string[];
  providers: string[];
  models: string[];
  regions: string[];
  inference_mode?: string;
}

/** A validated job submission (POST /v1/jobs). */
export interface JobSpec {
  task_id: string;
  user_id: string;
  project_id: string | null;
  group_id: string | null;
  requirements: Requirements;
  /** The task level of the user preferences; it overrides every stored level. */
  preferences: Partial<Record<PreferenceKey, unknown>>;
  budget_usd: number | null;
  estimated_cost_usd: number;
  payload: Record<string, unknown>;
  priority: number;
  max_attempts: number;
  timeout_ms: number;
  preferred_node_id: string | null;
}

/** User, project, group and node ids (task ids have their own, longer shape: isTaskId). */
const ID = /^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}$/;
const FIELDS = new Set([
  'task_id',
  'user_id',
  'project_id',
  'group_id',
  'requirements',
  'preferences',
  'budget_usd',
  'estimated_cost_usd',
  'payload',
  'priority',
  'max_attempts',
  'timeout_ms',
  'preferred_node_id',
]);

/**
 * Validates a job submission field by field; every problem is reported at once in a 422
 * `job_invalid` whose details name the fields. Defaults for attempts and timeout come from
 * config.
 */
export function parseJobSpec(raw: unknown, defaults: { maxAttempts: number; timeoutMs: number }): JobSpec {
  const errors: { field: string; message: string }[] = [];
  const fail = (field: string, message: string) => errors.push({ field, message });
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new GatewayError('job_invalid', 'the job must be a JSON object');
  const r = raw as Record<string, unknown>;
  for (const key of Object.keys(r)) if (!FIELDS.has(key)) fail(key, 'is not a job field');

  const id = (field: string, required: boolean): string | null => {
    const v = r[field];
    if ((v === undefined || v === null) && !required) return null;
    if (typeof v !== 'string' || !ID.test(v)) {
      fail(field, 'must be an id of 1-128 letters, digits or _.:@/-');
      return null;
    }
    return v;
  };
  // Task ids are shared with api.call, budgets and the audit filters: one shape and limit for all.
  const taskId = (): string => {
    const v = r.task_id;
    if (isTaskId(v)) return v;
    fail('task_id', `must be an id of 1-${TASK_ID_MAX} letters, digits or _.:@/-`);
    return '';
  };
  const int = (field: string, min: number, max: number, fallback: number): number => {
    const v = r[field];
    if (v === undefined) return fallback;
    if (!Number.isInteger(v) || (v as number) < min || (v as number) > max) fail(field, `must be an integer from ${min} to ${max}`);
    return v as number;
  };
  const usd = (field: string, nullable: boolean): number | null => {
    const v = r[field];
    if (v === undefined || (v === null && nullable)) return nullable ? null : 0;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1e6) fail(field, 'must be a number of USD from 0 to 1000000');
    return v as number;
  };

  const requirements = parseRequirements(r.requirements, fail);
  const preferences = parsePreferences(r.preferences, fail);

  const payload = r.payload;
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) fail('payload', 'is required and must be an object');

  const spec: JobSpec = {
    task_id: taskId(),
    user_id: id('user_id', true) ?? '',
    project_id: id('project_id', false),
    group_id: id('group_id', false),
    requirements,
    preferences,
    budget_usd: usd('budget_usd', true),
    estimated_cost_usd: usd('estimated_cost_usd', false) ?? 0,
    payload: payload as Record<string, unknown>,
    priority: int('priority', -1000, 1000, 0),
    max_attempts: int('max_attempts', 1, 100, defaults.maxAttempts),
    timeout_ms: int('timeout_ms', 1000, 86_400_000, defaults.timeoutMs),
    preferred_node_id: id('preferred_node_id', false),
  };
  if (errors.length > 0) {
    throw new GatewayError('job_invalid', `the job is invalid: ${errors.map((e) => `${e.field} ${e.message}`).join('; ')}`, { errors });
  }
  return spec;
}

type Fail = (field: string, message: string) => void;

/** The `requirements` of a job: every list deduplicated; problems go to `fail`. */
function parseRequirements(raw: unknown, fail: Fail): Requirements {
  const requirements: Requirements = { labels: [], providers: [], models: [], regions: [] };
  if (raw === undefined) return requirements;
  const q = raw as Record<string, unknown>;
  if (q === null || typeof q !== 'object' || Array.isArray(q)) {
    fail('requirements', 'must be an object');
    return requirements;
  }
  for (const key of Object.keys(q)) {
    const v = q[key];
    if (key === 'inference_mode') {
      if (typeof v !== 'string' || !['provider_api', 'ollama_remote', 'ollama_local'].includes(v)) {
        fail('requirements.inference_mode', 'must be provider_api, ollama_remote or ollama_local');
      } else requirements.inference_mode = v;
    } else if (key === 'labels' || key === 'providers' || key === 'models' || key === 'regions') {
      if (!Array.isArray(v) || v.length > 64 || !v.every((x) => typeof x === 'string' && NAME.test(x))) {
        fail(`requirements.${key}`, 'must be a list of at most 64 names');
      } else requirements[key] = [...new Set(v as string[])];
    } else fail(`requirements.${key}`, 'is not a requirement (labels, providers, models, regions, inference_mode)');
  }
  return requirements;
}

/** The task level of a job's preferences: known keys with valid values; problems go to `fail`. */
function parsePreferences(raw: unknown, fail: Fail): Partial<Record<PreferenceKey, unknown>> {
  const preferences: Partial<Record<PreferenceKey, unknown>> = {};
  if (raw === undefined) return preferences;
  const p = raw as Record<string, unknown>;
  if (p === null || typeof p !== 'object' || Array.isArray(p)) {
    fail('preferences', 'must be an object');
    return preferences;
  }
  for (const [key, value] of Object.entries(p)) {
    if (!isPreferenceKey(key)) {
      fail(`preferences.${key}`, 'is not a preference');
      continue;
    }
    const problem = preferenceProblem(key, value);
    if (problem) fail(`preferences.${key}`, problem);
    else preferences[key] = value;
  }
  return preferences;
}
