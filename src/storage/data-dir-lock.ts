import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GatewayError } from '../errors/index.js';

/** A held lock on an embedded data directory. */
export interface DataDirLock {
  release(): void;
}

/**
 * PGlite is single-process: two gateways opening one data directory would corrupt it. A pid
 * file claims the directory; a stale claim (its process gone) is taken over.
 */
export function acquireDataDirLock(dataDir: string): DataDirLock {
  const file = join(dataDir, 'cynode-gateway.pid');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      return { release: () => rmSync(file, { force: true }) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(readFileSync(file, 'utf8').trim());
      if (Number.isInteger(holder) && holder > 0 && (holder === process.pid || isAlive(holder))) {
        throw new GatewayError(
          'database_unavailable',
          `embedded data directory ${dataDir} is in use by process ${holder}; stop it or set CYNODE_DATA_DIR`,
        );
      }
      rmSync(file, { force: true });
    }
  }
  throw new GatewayError('database_unavailable', `cannot lock embedded data directory ${dataDir}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
