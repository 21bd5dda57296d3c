import { ODD_VALUES, type Random } from './random.js';

const LABELS = ['cloud', 'local', 'provider_openai', 'provider_anthropic'];
const CALLS = [
  { provider: 'openai', operation: 'chat.completions', model: 'gpt-4o-mini' },
  { provider: 'openai', operation: 'chat.completions', model: 'gpt-4o' },
  { provider: 'openai', operation: 'embeddings', model: 'text-embedding-3-small' },
  { provider: 'anthropic', operation: 'messages', model: 'claude-3-5-haiku-latest' },
  { provider: 'openai', operation: 'chat.completions', model: 'gpt-3.5-turbo' },
  { provider: 'shadyai', operation: 'complete', model: 'x' },
];
const REGIONS = ['us-east-1', 'eu-west-1', 'local', 'ap-south-1'];

const maybeOdd = (r: Random, value: unknown): unknown => (r.chance(0.04) ? r.pick(ODD_VALUES) : value);
const budget = (r: Random): unknown => {
  if (r.chance(0.3)) return null;
  if (r.chance(0.05)) return r.pick([{ limit_usd: 5 }, { remaining_usd: '4' }, ...ODD_VALUES]);
  return { limit_usd: 5, spent_usd: 1, reserved_usd: 0, remaining_usd: r.pick([0, 0.001, 4]) };
};
/** The task's, user's and subject's budgets; now and then a scope's key is left out. */
const budgets = (r: Random) => {
  const all = { task: budget(r), user: r.chance(0.8) ? null : budget(r), subject: r.chance(0.9) ? null : budget(r) };
  return r.chance(0.05) ? { user: all.user, subject: all.subject } : all;
};

/** The README's Example 1 call, or a direct one, with everything in order: the policy should allow. */
function allowed(r: Random): unknown {
  const worker = r.chance(0.6);
  return {
    action: 'api.call',
    subject: worker
      ? {
          kind: 'worker',
          id: 'cloud-us-east-1-01',
          labels: ['cloud', 'provider_openai'],
          region: 'us-east-1',
          supported_providers: ['openai'],
          supported_models: [],
        }
      : { kind: 'orchestrator', id: 'admin', labels: [] },
    resource: {
      ...(worker ? CALLS[r.int(2)]! : r.pick(CALLS.slice(0, 4))),
      stream: r.chance(0.5),
      estimated_cost_usd: r.pick([0.0001, 0.01]),
    },
    context: {
      task_id: 'task-1',
      job_id: null,
      user_id: 'user-1',
      project_id: null,
      group_id: null,
      region: worker ? 'us-east-1' : 'local',
      preferences: { cloud_allowed: true, provider: null, regions: [], max_cost_usd: null },
      requirements: {},
      budget: { task: { limit_usd: 5, spent_usd: 0, reserved_usd: 0, remaining_usd: 5 }, user: null, subject: null },
    },
  };
}

/** One `api.call` input: Example 1 calls that should pass, near misses, and malformed input. */
export function apiCallInput(r: Random): unknown {
  if (r.chance(0.02)) return r.pick(ODD_VALUES);
  if (r.chance(0.2)) return allowed(r);
  const worker = r.chance(0.7);
  const call = r.chance(0.4) ? CALLS[0]! : r.pick(CALLS);
  const region = worker ? r.pick(REGIONS) : r.pick(['local', 'local', 'us-east-1']);
  const subject = worker
    ? {
        kind: 'worker',
        id: r.pick(['cloud-us-east-1-01', 'cloud-quarantined-01', `node-${r.int(20)}`]),
        labels: maybeOdd(r, r.chance(0.5) ? ['cloud', 'provider_openai'] : LABELS.filter(() => r.chance(0.4))),
        region,
        inference_mode: 'provider_api',
        supported_providers: maybeOdd(r, r.chance(0.7) ? ['openai'] : ['openai', 'anthropic']),
        supported_models: r.chance(0.7) ? [] : [r.pick(CALLS).model],
        ...(r.chance(0.6) && {
          rate_limits: { rpm: r.pick([1, 300, 100_000]), ...(r.chance(0.3) && { tpm: r.pick([0, 90_000, '90000']) }) },
        }),
      }
    : { kind: maybeOdd(r, 'orchestrator'), id: 'admin', labels: [] };
  return {
    action: 'api.call',
    subject,
    resource: { ...call, stream: r.chance(0.3), estimated_cost_usd: maybeOdd(r, r.pick([0.0001, 0.01, 3])) },
    context: {
      task_id: maybeOdd(r, `task-${r.int(10)}`),
      job_id: worker ? `job-${r.int(100)}` : null,
      user_id: r.pick([null, 'user-1']),
      project_id: null,
      group_id: null,
      region: maybeOdd(r, region),
      preferences: maybeOdd(r, {
        cloud_allowed: r.chance(0.8),
        provider: r.pick([null, 'openai', 'anthropic']),
        regions: r.chance(0.7) ? [] : [r.pick(REGIONS)],
        max_cost_usd: r.pick([null, 1, 0.001]),
      }),
      requirements: r.chance(0.7) ? {} : { regions: [r.pick(REGIONS)] },
      budget: maybeOdd(r, budgets(r)),
    },
  };
}
