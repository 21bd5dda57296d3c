import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../src/lib/package-root.js';
import { ROUTE_TABLE } from '../../src/routes.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { type Browser, launchBrowser, type Page } from './browser.js';

/** The read-only token the console tests sign in with. */
export const READER_TOKEN = 'test-reader-token-0123456789abcdef';
/** Where each browser test saves its screenshot. */
export const SHOTS = join(packageRoot(), 'build', 'console');

/** Builds the console assets the way `npm run build` does (esbuild, well under a second) unless they are newer than their sources. */
export function buildConsole(): void {
  const root = packageRoot();
  const built = join(root, 'dist', 'console', 'app.js');
  const sources = [join(root, 'console'), join(root, 'scripts', 'build-console.mjs')];
  if (existsSync(built) && statSync(built).mtimeMs > Math.max(...sources.map(newest))) return;
  execFileSync(process.execPath, [join(root, 'scripts', 'build-console.mjs')], { stdio: 'inherit' });
}

function newest(path: string): number {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return Math.max(stat.mtimeMs, ...readdirSync(path).map((name) => newest(join(path, name))));
}

/** Whether this gateway's route table has a route (routes another part may not have yet). */
export function hasRoute(method: string, path: string): boolean {
  return ROUTE_TABLE.some((r) => r.method === method && r.path === path);
}

/** A gateway with the console built and a reader token, and a browser beside it. */
export interface ConsoleRig {
  gw: BootedGateway;
  base: string;
  browser: Browser;
  /** A new browser page signed in with `token` (a fresh context: its own cookies). */
  signedIn(token: string): Promise<Page>;
  stop(): Promise<void>;
}

/** Boots the rig: console built, gateway on real PostgreSQL (control role), chromium. */
export async function startRig(): Promise<ConsoleRig> {
  buildConsole();
  const gw = await bootGateway({ roles: ['control'], env: { CYNODE_READER_TOKEN: READER_TOKEN } });
  const base = gw.url();
  const browser = await launchBrowser().catch(async (err: unknown) => {
    await gw.stop();
    throw err;
  });
  return {
    gw,
    base,
    browser,
    async signedIn(token) {
      const page = await browser.newPage();
      await page.goto(`${base}/console`);
      await page.fill('#token', token);
      await page.click('form.signin button[type=submit]');
      await page.waitFor(`document.querySelector('nav a[aria-current=page]') !== null`);
      await page.waitFor(`!document.querySelector('main .loading')`);
      return page;
    },
    async stop() {
      await browser.close();
      await gw.stop();
    },
  };
}
