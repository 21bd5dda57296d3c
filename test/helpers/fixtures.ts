/** The seed's Example 1 cloud worker, as its capability report arrives at registration. */
export const SEED_WORKER = {
  node_id: 'cloud-us-east-1-01',
  labels: ['cloud', 'provider_openai'],
  region: 'us-east-1',
  provider: 'aws',
  inference_mode: 'provider_api',
  supported_providers: ['openai'],
  rate_limits: { rpm: 300 },
} as const;
