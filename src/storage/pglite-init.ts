/**
 * Child-process entry that runs initdb for a fresh embedded data directory and exits. initdb
 * grows PGlite's Wasm memory to ~800 MB, which a process never gets back; doing it here
 * leaves the gateway's own PGlite at its steady-state size.
 */
import { PGlite } from '@electric-sql/pglite';

const dataDir = process.argv[2];
if (!dataDir) {
  process.stderr.write('usage: pglite-init <dataDir>\n');
  process.exit(2);
}
const db = new PGlite(dataDir);
await db.waitReady;
await db.close();
