import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Config } from '../config/index.js';
import { StartupError } from '../lib/startup-error.js';
import type { Logger } from '../logging/index.js';

/**
 * The bootstrap admin/orchestrator token: `CYNODE_ADMIN_TOKEN` when set; otherwise the one
 * kept in `adminTokenFile`, generated (256 random bits, file mode 0600) on first start so a
 * fresh gateway is never open. The token itself is never logged, only where to find it.
 */
export function resolveAdminToken(auth: Config['auth'], logger: Logger): string {
  if (auth.adminToken) {
    if (auth.adminToken.length < 16) throw new StartupError('CYNODE_ADMIN_TOKEN must be at least 16 characters');
    return auth.adminToken;
  }
  const file = auth.adminTokenFile;
  if (existsSync(file)) {
    const token = readFileSync(file, 'utf8').trim();
    if (token.length < 16) throw new StartupError(`admin token file ${file} holds no usable token (16+ characters)`);
    return token;
  }
  const token = `cyn_admin_${randomBytes(32).toString('base64url')}`;
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, token + '\n', { mode: 0o600, flag: 'wx' });
  chmodSync(file, 0o600);
  logger
    .child({ component: 'auth' })
    .warn({ file }, 'generated an admin token; read it from this file (set CYNODE_ADMIN_TOKEN to choose your own)');
  return token;
}
