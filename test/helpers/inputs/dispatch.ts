import { ODD_VALUES, type Random } from './random.js';

const LABELS = ['cloud', 'local', 'gpu', 'provider_openai', 'provider_anthropic'];
const PROVIDERS = ['openai', 'anthropic', 'shadyai'];
const MODELS = ['gpt-4o-mini', 'gpt-4o', 'claude-3-5-sonnet'];
const REGIONS = ['us-east-1', 'eu-west-1', 'onprem', 'ap-south-1'];
const MODES = ['provider_api', 'ollama_remote', 'ollama_local'];

function some(r: Random, from: readonly string[], max: number): string[] {
  return from.filter(() => r.chance(max / from.length / 2));
}

function maybeOdd<T>(r: Random, value: T): unknown {
  return r.chance(0.04) ? r.pick(ODD_VALUES) : value;
}

/** A worker and a job made for each other: every signal matches, so the policy should allow. */
function matched(r: Random): unknown {
  const cloud = r.chance(0.5);
  const region = cloud ? r.pick(['us-east-1', 'eu-west-1']) : 'onprem';
  const providers = some(r, PROVIDERS.slice(0, 2), 2);
  const models = some(r, MODELS, 2);
  const max = r.pick([2, 4, 8]);
  const nodeId = `node-${r.int(50)}`;
  return {
    action: 'dispatch',
    subject: {
      node_id: nodeId,
      labels: cloud ? ['cloud', 'provider_openai'] : ['local', 'gpu'],
      region,
      ...(cloud && { provider: 'aws' }),
      inference_mode: cloud ? 'provider_api' : 'ollama_local',
      supported_providers: providers,
      supported_models: models,
      max_concurrency: max,
    },
    resource: {
      job_id: `job-${r.int(1000)}`,
      task_id: 'task-1',
      priority: r.pick([0, 5, -3]),
      requirements: {
        labels: cloud ? ['cloud'] : [],
        providers: providers.slice(0, 1),
        models: models.slice(0, 1),
        regions: r.chance(0.5) ? [region] : [],
      },
      estimated_cost_usd: r.pick([0, 0.02, 1]),
      budget_usd: r.pick([null, 2, 100]),
      preferred_node_id: r.pick([null, nodeId]),
    },
    context: {
      user_id: 'user-1',
      project_id: null,
      group_id: null,
      preferences: {
        cloud_allowed: true,
        provider: r.chance(0.5) && providers.length > 0 ? providers[0] : null,
        regions: [],
        max_cost_usd: null,
        locality_max_wait_ms: 0,
      },
      load: { active_jobs: r.int(max), max_concurrency: max },
      locality: { waited_ms: r.int(60_000) },
    },
  };
}

/** One `dispatch` input: workers and jobs that match, miss on one signal, or are malformed. */
export function dispatchInput(r: Random): unknown {
  if (r.chance(0.02)) return r.pick(ODD_VALUES);
  if (r.chance(0.25)) return matched(r);
  const cloud = r.chance(0.5);
  const nodeId = r.pick(['cloud-us-east-1-01', 'lab-gpu-01', `node-${r.int(50)}`]);
  const subject: Record<string, unknown> = {
    node_id: maybeOdd(r, nodeId),
    labels: maybeOdd(
      r,
      cloud
        ? ['cloud', ...some(r, LABELS, 2)]
        : some(
            r,
            LABELS.filter((l) => l !== 'cloud'),
            2,
          ),
    ),
    ...(r.chance(0.85) && { region: maybeOdd(r, r.pick(REGIONS)) }),
    ...(cloud && { provider: r.pick(['aws', 'gcp']) }),
    inference_mode: maybeOdd(r, r.pick(MODES)),
    supported_providers: maybeOdd(r, some(r, PROVIDERS, 2)),
    ...(r.chance(0.5) && { supported_models: maybeOdd(r, some(r, MODELS, 2)) }),
    max_concurrency: r.pick([1, 4, 8]),
  };
  const max = r.pick([1, 4, 8, 0]);
  const input = {
    action: 'dispatch',
    subject,
    resource: {
      job_id: maybeOdd(r, `job-${r.int(1000)}`),
      task_id: `task-${r.int(100)}`,
      priority: r.pick([0, 5, -3, 100]),
      requirements: maybeOdd(r, {
        labels: some(r, LABELS, 1),
        providers: some(r, PROVIDERS, 1),
        models: some(r, MODELS, 1),
        regions: r.chance(0.3) ? some(r, REGIONS, 2) : [],
        ...(r.chance(0.3) && { inference_mode: r.pick(MODES) }),
      }),
      estimated_cost_usd: r.pick([0, 0.02, 1, 7.5]),
      budget_usd: r.pick([null, 0.01, 2, 100]),
      preferred_node_id: r.pick([null, nodeId, 'elsewhere-01', '']),
    },
    context: {
      user_id: 'user-1',
      project_id: r.pick([null, 'project-1']),
      group_id: null,
      preferences: maybeOdd(r, {
        cloud_allowed: r.chance(0.6),
        provider: r.pick([null, 'openai', 'anthropic', 'shadyai']),
        regions: r.chance(0.3) ? some(r, REGIONS, 2) : [],
        max_cost_usd: r.pick([null, 0.5, 10]),
        locality_max_wait_ms: r.pick([0, 30_000]),
      }),
      load: maybeOdd(r, { active_jobs: r.int(9), max_concurrency: max }),
      locality: { waited_ms: r.pick([0, 10_000, 60_000]) },
    },
  };
  for (const part of ['subject', 'resource', 'context'] as const) if (r.chance(0.02)) delete (input as Record<string, unknown>)[part];
  return input;
}
