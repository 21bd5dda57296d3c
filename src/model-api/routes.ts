import { API_CALL_ERRORS } from '../egress/index.js';
import { defineRoutes, type ErrorShape, type Route } from '../server/route.js';
import { anthropicErrorShape, openAiErrorShape } from './errors.js';
import { allowedModels, type ModelApiDeps, relayModelCall } from './service.js';

const RELAYED = {
  200: { description: "The provider's answer as it sent it: JSON, or server-sent events as they arrive", schema: 'Any' },
};

/** A POST that relays one provider operation. */
function relayRoute(path: string, provider: string, operation: string, errorShape: ErrorShape, summary: string): Route<ModelApiDeps> {
  return {
    method: 'post',
    path,
    roles: ['mcp'],
    access: 'modelKey',
    summary,
    body: { schema: 'Any', handlerChecks: 'the provider adapter checks the request as api.call params' },
    ok: RELAYED,
    errors: [...API_CALL_ERRORS],
    errorShape,
    db: true,
    decides: true,
    handler: (ctx, deps) => relayModelCall(ctx, deps, provider, operation),
  };
}

/** A GET listing the models of `provider` the policy lets the caller use, in the provider's list shape. */
function modelsRoute(path: string, provider: string, errorShape: ErrorShape, shape: (models: string[]) => unknown): Route<ModelApiDeps> {
  return {
    method: 'get',
    path,
    roles: ['mcp'],
    access: 'modelKey',
    summary: `The ${provider} models the api.call policy lets this caller use (the provider's list shape).`,
    ok: { 200: { description: 'The models', schema: 'Any' } },
    errors: ['job_not_leased', 'policy_denied', 'bad_request'],
    errorShape,
    db: true,
    decides: true,
    handler: async (ctx, deps) => {
      ctx.body = shape(await allowedModels(ctx, deps, provider));
    },
  };
}

/**
 * The drop-in model APIs on the MCP port: OpenAI's and Anthropic's own HTTP APIs under
 * `/openai` and `/anthropic`, so an unmodified SDK needs only a base URL and a key (an agent
 * token, or a worker token with X-Cynode-Job-Id). Each request is an `api.call` decided at both
 * gates, reserved, settled and audited as one; answers and errors come in the provider's shapes.
 */
export const MODEL_API_ROUTES = defineRoutes<ModelApiDeps>([
  relayRoute(
    '/openai/v1/chat/completions',
    'openai',
    'chat.completions',
    openAiErrorShape,
    'OpenAI chat completions (streamed or not), as api.call.',
  ),
  relayRoute('/openai/v1/responses', 'openai', 'responses', openAiErrorShape, 'OpenAI Responses API (streamed or not), as api.call.'),
  relayRoute('/openai/v1/embeddings', 'openai', 'embeddings', openAiErrorShape, 'OpenAI embeddings, as api.call.'),
  modelsRoute('/openai/v1/models', 'openai', openAiErrorShape, (models) => ({
    object: 'list',
    data: models.map((id) => ({ id, object: 'model', created: 0, owned_by: 'openai' })),
  })),
  relayRoute('/anthropic/v1/messages', 'anthropic', 'messages', anthropicErrorShape, 'Anthropic messages (streamed or not), as api.call.'),
  relayRoute(
    '/anthropic/v1/messages/count_tokens',
    'anthropic',
    'messages.count_tokens',
    anthropicErrorShape,
    'Anthropic token counting, as api.call (not billed).',
  ),
  modelsRoute('/anthropic/v1/models', 'anthropic', anthropicErrorShape, (models) => ({
    data: models.map((id) => ({ type: 'model', id, display_name: id, created_at: '1970-01-01T00:00:00Z' })),
    has_more: false,
    first_id: models[0] ?? null,
    last_id: models.at(-1) ?? null,
  })),
]);
