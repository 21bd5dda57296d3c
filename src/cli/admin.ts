import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { resolveAdminToken } from '../auth/index.js';
import type { Config } from '../config/index.js';
import type { Logger } from '../logging/index.js';
import { StartupError } from '../lib/startup-error.js';
import { readSecretFromStdin } from './credentials.js';
import { UsageError, UsageErrorFor } from './usage.js';

/** One admin API request: answers the JSON body, or throws the gateway's `code: message`. */
type AdminCall = (method: string, path: string, body?: unknown) => Promise<Record<string, unknown>>;

/** What each command gets: its positionals, its flags and the admin API. */
interface CommandContext {
  sub: string | undefined;
  arg: string | undefined;
  values: ReturnType<typeof parseAdminArgs>['values'];
  call: AdminCall;
}

const out = (v: unknown) => console.log(JSON.stringify(v, null, 2));

function parseAdminArgs(args: string[]) {
  try {
    return parseArgs({
      args,
      allowPositionals: true,
      options: {
        url: { type: 'string' },
        name: { type: 'string' },
        provider: { type: 'string' },
        'owner-user': { type: 'string' },
        'owner-group': { type: 'string' },
        'expires-at': { type: 'string' },
        'node-id-pattern': { type: 'string' },
        labels: { type: 'string' },
        regions: { type: 'string' },
      },
    });
  } catch (err) {
    throw UsageErrorFor(err);
  }
}

function adminClient(base: string, token: string): AdminCall {
  return async (method, path, body) => {
    let res: Response;
    try {
      res = await fetch(base + path, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body !== undefined && { 'content-type': 'application/json' }) },
        ...(body !== undefined && { body: JSON.stringify(body) }),
      });
    } catch (err) {
      throw new StartupError(
        `cannot reach the gateway at ${base}: ${(err as Error).cause ? String(((err as Error).cause as Error).message) : (err as Error).message}`,
      );
    }
    const answer = (await res.json().catch(() => null)) as { error?: { code: string; message: string } } | null;
    if (!res.ok) throw new StartupError(`${answer?.error?.code ?? res.status}: ${answer?.error?.message ?? res.statusText}`);
    return answer as Record<string, unknown>;
  };
}

async function credentialsCommand({ sub, arg, values, call }: CommandContext): Promise<number> {
  switch (sub) {
    case 'add': {
      if (!values.provider || !values.name)
        throw new UsageError('credentials add needs --provider and --name (the secret comes on standard input)');
      const secret = await readSecretFromStdin();
      out(
        await call('POST', '/v1/credentials', {
          provider: values.provider,
          name: values.name,
          secret,
          ...(values['owner-user'] && { owner_user: values['owner-user'] }),
          ...(values['owner-group'] && { owner_group: values['owner-group'] }),
          ...(values['expires-at'] && { expires_at: values['expires-at'] }),
        }),
      );
      return 0;
    }
    case 'list':
      out(await call('GET', '/v1/credentials'));
      return 0;
    case 'rotate':
      if (!arg) throw new UsageError('credentials rotate needs the credential id (the new secret comes on standard input)');
      out(await call('POST', `/v1/credentials/${encodeURIComponent(arg)}/rotate`, { secret: await readSecretFromStdin() }));
      return 0;
    case 'disable':
      if (!arg) throw new UsageError('credentials disable needs the credential id');
      out(await call('POST', `/v1/credentials/${encodeURIComponent(arg)}/disable`));
      return 0;
    default:
      throw new UsageError("credentials takes 'add', 'list', 'rotate', 'disable' or 'rewrap'");
  }
}

async function keysCommand({ sub, call }: CommandContext): Promise<number> {
  if (sub !== 'rotate') throw new UsageError("keys takes 'rotate'");
  out(await call('POST', '/v1/keys/rotate'));
  return 0;
}

/** A comma-separated flag as a list (empty entries dropped). */
const listFlag = (v: string) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');

/** The scope flags of `psk create` as the API's `constraints` (the gateway validates them); undefined when none is given. */
function pskConstraintsOf(values: CommandContext['values']): Record<string, unknown> | undefined {
  const constraints = {
    ...(values['node-id-pattern'] !== undefined && { node_id_pattern: values['node-id-pattern'] }),
    ...(values.labels !== undefined && { allowed_labels: listFlag(values.labels) }),
    ...(values.regions !== undefined && { regions: listFlag(values.regions) }),
  };
  return Object.keys(constraints).length > 0 ? constraints : undefined;
}

async function pskCommand({ sub, arg, values, call }: CommandContext): Promise<number> {
  switch (sub) {
    case 'create': {
      if (!values.name) throw new UsageError('psk create needs --name');
      const constraints = pskConstraintsOf(values);
      const created = await call('POST', '/v1/psks', {
        name: values.name,
        ...(values['expires-at'] && { expires_at: values['expires-at'] }),
        ...(constraints && { constraints }),
      });
      out(created);
      console.error('cynode-gateway: the secret is shown this once; give it to the worker as CYNODE_REGISTER_PSK');
      return 0;
    }
    case 'list':
      out(await call('GET', '/v1/psks'));
      return 0;
    case 'revoke':
      if (!arg) throw new UsageError('psk revoke needs the PSK id');
      out(await call('DELETE', `/v1/psks/${encodeURIComponent(arg)}`));
      return 0;
    default:
      throw new UsageError("psk takes 'create', 'list' or 'revoke'");
  }
}

const COMMANDS = { credentials: credentialsCommand, keys: keysCommand, psk: pskCommand };

/**
 * Admin commands that act on a running gateway through its admin API (`--url`, default the
 * configured control port on localhost), with the admin token: `psk create|list|revoke` and
 * `keys rotate`. Going through the API, not the database, is what lets them work with the
 * embedded database (locked by the running gateway) and rotate keys that live only in the
 * gateway's memory.
 */
export async function runAdmin(config: Config, logger: Logger, command: 'psk' | 'keys' | 'credentials', args: string[]): Promise<number> {
  const { values, positionals } = parseAdminArgs(args);
  const base = (values.url ?? `http://${config.server.host}:${config.server.controlPort}`).replace(/\/+$/, '');
  if (!config.auth.adminToken && !existsSync(config.auth.adminTokenFile)) {
    throw new StartupError(`no admin token: set CYNODE_ADMIN_TOKEN or run where the gateway keeps ${config.auth.adminTokenFile}`);
  }
  const token = resolveAdminToken(config.auth, logger);
  const [sub, arg] = positionals;
  return COMMANDS[command]({ sub, arg, values, call: adminClient(base, token) });
}
