import type { Core } from '../core/module.js';
import type { ApiCallGateway } from '../egress/index.js';
import type { Authenticators } from '../server/app.js';
import type { Lifecycle } from '../server/lifecycle.js';
import { bindRoutes, type BoundRoute } from '../server/route.js';
import type { WorkerService } from '../workers/index.js';
import { createAgentTokens } from './agent-tokens.js';
import { createToolAudit } from './audit.js';
import { parseMcpConfig } from './config.js';
import { createLeaseLookup, type LeaseLookup, LEASES_CHANNEL } from './leases.js';
import { createMcpMetrics } from './metrics.js';
import { MCP_ROUTES } from './routes.js';
import { createMcpGateway, type McpGateway } from './service.js';
import { createUpstreamClient } from './upstreams.js';
import type { ToolAudit } from './index.js';

/** The MCP gateway as the gateway runs it: agent tokens, upstream clients, the tool audit trail. */
export interface McpModule {
  toolAudit: ToolAudit;
  routes: BoundRoute[];
  authenticators: Pick<Authenticators, 'agent'>;
  /** How callers are told apart and their leases found: what the drop-in model APIs key on too. */
  callers: { authenticate: McpGateway['authenticate']; leases: LeaseLookup };
}

/** Starts the MCP gateway over `api.call` and the upstreams in config (a bad upstream entry stops the start). */
export function startMcp(core: Core, deps: { workers: WorkerService; apiCalls: ApiCallGateway }, life: Lifecycle): McpModule {
  const { config, db, logger } = core;
  const { upstreams, stdioEnv } = parseMcpConfig(config.mcp);
  const client = createUpstreamClient({
    keys: core.keys,
    issuer: config.auth.issuer,
    forwardTokenTtlMs: config.auth.forwardTokenTtlMs,
    timeoutMs: config.mcp.toolTimeoutMs,
    maxResponseBytes: config.mcp.maxResponseBytes,
    stdioEnv,
  });
  life.add('MCP upstream clients', () => client.close());
  const toolAudit = createToolAudit(db.knex, logger, config.audit);
  life.add('tool audit', () => toolAudit.close());
  const agentTokens = createAgentTokens({ keys: core.keys, issuer: config.auth.issuer, ttlMs: config.auth.workerTokenTtlMs });
  // Lease ends from every replica (this one's too) drop what is remembered of the node's
  // leases; a reconnect drops everything, and while the listener is down nothing is kept.
  const leases = createLeaseLookup({ knex: db.knex, listening: () => core.listener.listening(LEASES_CHANNEL) });
  core.listener.on(LEASES_CHANNEL, (nodeId) => leases.ended(nodeId || undefined));
  const gateway = createMcpGateway({
    leases,
    logger,
    decisions: core.decisions,
    workers: deps.workers,
    apiCalls: deps.apiCalls,
    upstreams,
    client,
    audit: toolAudit,
    agentTokens,
    maxBodyBytes: config.server.maxBodyBytes,
    maxArgumentBytes: config.mcp.maxArgumentBytes,
    metrics: createMcpMetrics(core.registry),
    discoveryTtlMs: config.mcp.discoveryTtlMs,
  });
  return {
    toolAudit,
    routes: bindRoutes(MCP_ROUTES, { gateway, knex: db.knex, agentTokens }),
    callers: { authenticate: gateway.authenticate, leases },
    authenticators: {
      agent: async (ctx, next) => {
        ctx.state.mcpCaller = await gateway.authenticate(ctx.get('authorization'));
        await next();
      },
    },
  };
}
