import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { packageRoot } from '../lib/package-root.js';

/** Where `npm run build` (scripts/build-console.mjs) writes the console's bundled files. */
export const ASSETS_DIR = join('dist', 'console');

/** One built file of the console, held in memory. */
export interface Asset {
  body: Buffer;
  type: string;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.map': 'application/json',
};

/**
 * The console's built files by name (`index.html`, `app.js`, ...), read once at start so a
 * request can only ever reach a file the build produced. Empty when the console was not built.
 */
export function loadAssets(dir = join(packageRoot(), ASSETS_DIR)): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  if (!existsSync(dir)) return assets;
  for (const name of readdirSync(dir)) {
    const type = TYPES[extname(name)];
    if (type) assets.set(name, { body: readFileSync(join(dir, name)), type });
  }
  return assets;
}

/**
 * The Content-Security-Policy of every console answer: scripts, styles, images and API calls
 * from the gateway itself only, no inline code, never framed.
 */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "object-src 'none'",
  "frame-ancestors 'none'",
].join('; ');
