import type { ApiCallGateway } from '../egress/index.js';
import type { Authenticators } from '../server/app.js';
import { bindRoutes, type BoundRoute } from '../server/route.js';
import { type ModelKeyDeps, modelKeyAuth } from './caller.js';
import { MODEL_API_ROUTES } from './routes.js';

/** The drop-in model APIs as the gateway runs them: their routes and the key check they name. */
export interface ModelApiModule {
  routes: BoundRoute[];
  authenticators: Pick<Authenticators, 'modelKey'>;
}

/** Serves the OpenAI and Anthropic surfaces over `api.call`, keyed by the MCP gateway's callers and leases. */
export function startModelApi(deps: { apiCalls: ApiCallGateway; callers: ModelKeyDeps }): ModelApiModule {
  return {
    routes: bindRoutes(MODEL_API_ROUTES, { apiCalls: deps.apiCalls, leases: deps.callers.leases }),
    authenticators: { modelKey: modelKeyAuth(deps.callers) },
  };
}
