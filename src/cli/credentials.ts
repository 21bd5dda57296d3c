import { connectAndMigrate } from '../storage/index.js';
import type { Config } from '../config/index.js';
import type { Logger } from '../logging/index.js';
import { createCredentialStore, loadKeyRing } from '../vault/index.js';

/** Reads a secret from standard input (never from argv, which every `ps` shows). */
export async function readSecretFromStdin(): Promise<string> {
  if (process.stdin.isTTY) process.stderr.write('secret (then Enter, Ctrl-D): ');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/**
 * `credentials rewrap`: re-wraps every credential's data key under the current master key
 * (`CYNODE_MASTER_KEY`), opening them with the keys in `CYNODE_MASTER_KEY_PREVIOUS`. It works
 * on the database directly, because the new master key must never travel over the API; with
 * the embedded database, stop the gateway first (it holds the data directory).
 */
export async function runRewrap(config: Config, logger: Logger): Promise<number> {
  const ring = loadKeyRing(config.vault, logger);
  const db = await connectAndMigrate(config.database, logger);
  try {
    const moved = await createCredentialStore({ knex: db.knex, ring, logger }).rewrapAll();
    console.log(JSON.stringify({ rewrapped: moved, kid: ring.current.kid }));
    return 0;
  } finally {
    await db.close();
  }
}
