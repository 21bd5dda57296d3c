import { parseArgs } from 'node:util';
import { startArtifactServer } from '../artifacts/server.js';
import { resolveAdminToken } from '../auth/index.js';
import type { Config } from '../config/index.js';
import { createFinalGate, readGatewayTransport } from '../final-gate/index.js';
import type { Logger } from '../logging/index.js';
import { upstreamAudience } from '../mcp/index.js';
import { createBundleChecks } from '../policy/checks.js';
import { connectAndMigrate } from '../storage/index.js';
import { UsageError } from './usage.js';

/**
 * `artifact-server [--name N] [--stdio]`: the reference upstream MCP tool server (task-scoped
 * artifact_put/get/list in PostgreSQL), running the final gate on the gateway's bundle. List
 * it in the gateway's `mcp.upstreams` as `N=http://host:port/mcp`, or, with `--stdio` (the
 * gateway starts it and talks on its stdin/stdout; logs go to stderr), as
 * `N=stdio:cynode-gateway artifact-server --name N --stdio`.
 */
export async function runArtifactServer(config: Config, logger: Logger, args: string[], env: NodeJS.ProcessEnv = {}): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: { name: { type: 'string', default: 'artifacts' }, stdio: { type: 'boolean', default: false } },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const db = await connectAndMigrate(config.database, logger);
  const gate = createFinalGate({
    gatewayUrl: config.artifacts.gatewayUrl,
    audience: upstreamAudience(values.name),
    issuer: config.auth.issuer,
    bundleToken: config.auth.bundleServiceToken ?? resolveAdminToken(config.auth, logger),
    verify: createBundleChecks(config.policy).verify,
    logger,
    pollMinDelayMs: config.policy.pollMinDelayMs,
    pollMaxDelayMs: config.policy.pollMaxDelayMs,
    maxTokenTtlMs: config.auth.forwardTokenTtlMs + 1000,
    // The final gate's own variables, as every target service reads them.
    transport: readGatewayTransport({ caFile: env.CYNODE_CA_FILE, allowInsecure: env.CYNODE_ALLOW_INSECURE === 'true' }),
  });
  await gate.ready;
  const server = await startArtifactServer({
    knex: db.knex,
    gate,
    logger,
    host: config.server.host,
    port: config.artifacts.port,
    maxBodyBytes: config.server.maxBodyBytes,
    transport: values.stdio ? 'stdio' : 'http',
  });
  logger.info({ url: server.url, name: values.name, bundle: gate.engine.status().active?.revision ?? null }, 'artifact server ready');
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
    void server.closed.then(resolve);
  });
  await server.close();
  gate.close();
  await db.close();
  return 0;
}
