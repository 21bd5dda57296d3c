#!/usr/bin/env node
import { parseArgs } from 'node:util';
import pino from 'pino';
import { ConfigError, loadConfig } from '../config/index.js';
import { createLogger } from '../logging/index.js';
import { StartupError } from '../lib/startup-error.js';
import { BundleError, ToolchainError } from '../policy/index.js';
import { isClusterWorker } from '../server/cluster.js';
import { runAdmin } from './admin.js';
import { runArtifactServer } from './artifact-server.js';
import { runAudit } from './audit.js';
import { runRewrap } from './credentials.js';
import { runMigrate } from './migrate.js';
import { runPolicy } from './policy.js';
import { runServe } from './serve.js';
import { UsageError } from './usage.js';
import { runWorkerCommand } from './worker.js';

const USAGE = `usage: cynode-gateway <command> [options]

commands:
  serve [--role control|mcp|egress|all] [--workers N]
                                          run the gateway (default: all roles); --workers N runs N processes
                                          on the same ports (PostgreSQL only), each a full replica
  migrate [up|down|status] [--all]        apply, revert (last batch, or --all) or list migrations
  policy build [--out FILE] [--revision R] [--unsigned]
                                          compile policies/ into a signed Wasm bundle with opa build
  policy test                             run opa test with the coverage threshold
  policy eval --entrypoint E [--input FILE|-] [--bundle FILE]
                                          one decision on the gateway's engine, printed as POST /v1/data answers it
  policy replay --bundle CANDIDATE [--since 24h] [--entrypoint E] [--limit N] [--url GATEWAY] [--max-flips N] [--json]
                                          re-evaluate recorded decisions on a candidate bundle; exit 1 past --max-flips
  audit verify [--checkpoints FILE|URL]   check the hash chains of the decision log, api.call and tool audits,
                                          and hold them to their signed checkpoints (exit 1 if broken or truncated)
  audit prune --before DATE               remove audit rows older than DATE, cut at a signed checkpoint so the rest
                                          still verifies
  artifact-server [--name N] [--stdio]    run the reference upstream MCP tool server (task artifacts, final gate);
                                          --stdio serves the gateway that started it on stdin/stdout
  worker [--max-jobs N]                   run the reference cloud worker (CYNODE_ORCH_URL, CYNODE_NODE_ID,
                                          CYNODE_REGISTER_PSK, CYNODE_LABELS, CYNODE_CAP_* variables)
  psk create --name NAME [--expires-at ISO] [--node-id-pattern GLOB|^REGEX$] [--labels A,B] [--regions R1,R2]
  psk list | psk revoke ID
                                          manage registration PSKs on a running gateway (--url, admin token)
  keys rotate                             make every replica sign JWTs with a new key (--url, admin token)
  credentials add --provider P --name N [--owner-user U] [--owner-group G] [--expires-at ISO]
  credentials list | rotate ID | disable ID
                                          provider credentials on a running gateway; secrets on standard input
  credentials rewrap                      re-wrap every credential under CYNODE_MASTER_KEY (old keys in
                                          CYNODE_MASTER_KEY_PREVIOUS), directly on the database

configuration: config/default.yaml, config/local.yaml, CYNODE_CONFIG, and CYNODE_* env overrides`;

/** Exit codes: 0 ok, 1 failure, 2 usage or configuration error; OPA's own code for OPA failures. */
async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === 'help' || command === '--help' || command === '-h') {
    console.log(USAGE);
    return command ? 0 : 2;
  }
  const config = loadConfig({ env: process.env, cwd: process.cwd() });
  // A stdio MCP server's stdout is its protocol channel: its logs go to stderr.
  const stdio = command === 'artifact-server' && rest.includes('--stdio');
  // A cluster worker shares the primary's stdout and writes each line as it logs it: its
  // 'worker ready' is in the pipe before it tells the primary (pino's flush of an asynchronous
  // stream calls back before the write is done), so it precedes the primary's 'gateway ready'.
  const destination = stdio
    ? pino.destination({ fd: 2, sync: false })
    : isClusterWorker()
      ? pino.destination({ fd: 1, sync: true })
      : undefined;
  const logger = createLogger({ level: config.log.level, ...(destination && { destination }) });
  switch (command) {
    case 'serve': {
      const { values } = parseArgs({
        args: rest,
        options: {
          role: { type: 'string', default: process.env.CYNODE_ROLE ?? 'all' },
          workers: { type: 'string', default: process.env.CYNODE_WORKERS ?? '1' },
        },
      });
      return runServe(config, logger, values.role, values.workers);
    }
    case 'migrate':
      return runMigrate(config, logger, rest);
    case 'policy':
      return runPolicy(config, rest);
    case 'audit':
      return runAudit(config, logger, rest);
    case 'artifact-server':
      return runArtifactServer(config, logger, rest, process.env);
    case 'worker':
      return runWorkerCommand(process.env, logger, rest);
    case 'credentials':
      if (rest[0] === 'rewrap') return runRewrap(config, logger);
      return runAdmin(config, logger, command, rest);
    case 'psk':
    case 'keys':
      return runAdmin(config, logger, command, rest);
    default:
      throw new UsageError(`unknown command '${command}'`);
  }
}

function report(err: unknown): number {
  const known: [new (...a: never[]) => Error, string, number][] = [
    [ConfigError, 'config error', 2],
    [UsageError, 'usage', 2],
    [StartupError, 'cannot start', 1],
    [BundleError, 'bundle', 1],
  ];
  if (err instanceof ToolchainError) {
    console.error(`cynode-gateway: ${err.message}`);
    return err.exitCode;
  }
  for (const [type, label, code] of known) {
    if (err instanceof type) {
      console.error(`cynode-gateway: ${label}: ${err.message}`);
      if (type === UsageError) console.error(USAGE);
      return code;
    }
  }
  if ((err as { code?: string })?.code?.startsWith('ERR_PARSE_ARGS')) {
    console.error(`cynode-gateway: usage: ${(err as Error).message}`);
    return 2;
  }
  console.error('cynode-gateway: unexpected error:', err);
  return 1;
}

// The exit code is set and the loop left to drain (so piped output is written in full); a
// handle something left open must not keep a finished command alive, so a timer that does
// not itself hold the loop ends the process if it is still there two seconds later.
const exit = (code: number) => {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 2000).unref();
};
main(process.argv.slice(2)).then(exit, (err: unknown) => exit(report(err)));
