import { randomUUID } from 'node:crypto';

/** The README's Example 1 cloud worker, as its capability report arrives at registration. */
export const SEED_WORKER = {
  node_id: 'cloud-us-east-1-01',
  labels: ['cloud', 'provider_openai'],
  region: 'us-east-1',
  provider: 'aws',
  inference_mode: 'provider_api',
  supported_providers: ['openai'],
  rate_limits: { rpm: 300 },
} as const;

/**
 * A cloud worker and a cloud job made for each other, as the dispatch policy sees them: with
 * cloud routing on it is allowed, so `cloud_routing_disabled` in its reasons shows the kill switch.
 */
export const CLOUD_DISPATCH_INPUT = {
  action: 'dispatch',
  subject: {
    node_id: 'cloud-probe-01',
    labels: ['cloud', 'provider_openai'],
    region: 'us-east-1',
    provider: 'aws',
    inference_mode: 'provider_api',
    supported_providers: ['openai'],
    supported_models: ['gpt-4o-mini'],
    max_concurrency: 4,
  },
  resource: {
    job_id: 'job-probe',
    task_id: 'task-probe',
    priority: 0,
    requirements: { labels: ['cloud'], providers: ['openai'], models: ['gpt-4o-mini'], regions: [] },
    estimated_cost_usd: 0,
    budget_usd: null,
    preferred_node_id: null,
  },
  context: {
    user_id: 'user-probe',
    project_id: null,
    group_id: null,
    preferences: { cloud_allowed: true, provider: null, regions: [], max_cost_usd: null, locality_max_wait_ms: 0 },
    load: { active_jobs: 0, max_concurrency: 4 },
    locality: { waited_ms: 0 },
  },
};

/** A `jobs` row written straight into the table: queued, or leased by `lease.node` until `lease.until`. */
export function jobRow(id: string, taskId: string, at: Date, lease?: { node: string; until: Date }) {
  return {
    id,
    task_id: taskId,
    user_id: 'u',
    requirements: '{}',
    preferences: '{}',
    estimated_cost_usd: 0,
    payload: '{}',
    priority: 0,
    max_attempts: 3,
    timeout_ms: 60_000,
    state: lease ? 'leased' : 'queued',
    attempts: lease ? 1 : 0,
    available_at: at,
    ...(lease && { lease_id: randomUUID(), leased_by: lease.node, lease_expires_at: lease.until }),
    submitted_by: 'test',
    created_at: at,
    updated_at: at,
  };
}
