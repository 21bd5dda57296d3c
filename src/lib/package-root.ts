import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

/**
 * The folder holding the gateway's package.json, found by walking up from this module, so
 * shipped files (config/default.yaml, policies/, migrations/) resolve the same whether the
 * code runs from `src/` through tsx or from compiled `dist/`.
 */
export function packageRoot(): string {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cynode-gateway: package.json not found above ' + import.meta.url);
    dir = parent;
  }
  cached = dir;
  return dir;
}
