import type { Core } from '../core/module.js';
import { bindRoutes, type BoundRoute } from '../server/route.js';
import { REPLAY_ROUTES } from './routes.js';
import { createReplayService, type ReplayService } from './service.js';

/** Policy replay as the gateway serves it: the service and its route. */
export interface ReplayModule {
  replay: ReplayService;
  routes: BoundRoute[];
}

/** Builds the replay service over the core's database, bundle rules and decision log; it starts nothing long-lived. */
export function startReplay(core: Core): ReplayModule {
  const replay = createReplayService({
    knex: core.db.knex,
    policy: core.config.policy,
    logger: core.logger,
    flush: () => core.decisionLog.flush(),
  });
  return { replay, routes: bindRoutes(REPLAY_ROUTES, { replay, maxBodyBytes: core.config.server.maxBodyBytes }) };
}
