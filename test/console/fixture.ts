import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { packageRoot } from '../../src/lib/package-root.js';
import { ROUTE_TABLE } from '../../src/routes.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';

/** Debian's chromium; `.ci/run` installs it when missing. Playwright drives it, nothing is downloaded. */
export const CHROMIUM = process.env.CYNODE_CHROMIUM ?? '/usr/bin/chromium';
const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
/** How long a wait in the page may take before the test fails. */
const WAIT_MS = 5000;

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

/** A request a page made, as the browser saw it (`type` is Playwright's resource type: script, stylesheet, fetch...). */
export interface SeenRequest {
  url: string;
  type: string;
}

/** Options of a signed-in page. */
export interface PageOptions {
  /** Lets injected scripts past the page's CSP: only for the axe-core audit, never for what the tests assert of the page itself. */
  bypassCSP?: boolean;
}

/** A gateway with the console built and a reader token, and a browser beside it. */
export interface ConsoleRig {
  gw: BootedGateway;
  base: string;
  browser: Browser;
  /** A page in a fresh browser context (its own cookies) at the sign-in form. */
  signInPage(options?: PageOptions): Promise<Page>;
  /** A new browser page signed in with `token` (a fresh context: its own cookies). */
  signedIn(token: string, options?: PageOptions): Promise<Page>;
  /** Every request `page` made so far. */
  requests(page: Page): SeenRequest[];
  /** Every error `page` logged to its console so far (a CSP refusal is one). */
  errors(page: Page): string[];
  stop(): Promise<void>;
}

/** Starts Debian's chromium headless through playwright-core. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  return chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
}

/** Boots the rig: console built, gateway on real PostgreSQL (control role), chromium. */
export async function startRig(): Promise<ConsoleRig> {
  buildConsole();
  const gw = await bootGateway({ roles: ['control'], env: { CYNODE_READER_TOKEN: READER_TOKEN } });
  const base = gw.url();
  const browser = await launchChromium().catch(async (err: unknown) => {
    await gw.stop();
    throw err;
  });
  const seen = new WeakMap<Page, { requests: SeenRequest[]; errors: string[] }>();
  const signInPage = async (options: PageOptions = {}) => {
    const context: BrowserContext = await browser.newContext({
      viewport: { width: 1280, height: 900 },
      bypassCSP: options.bypassCSP ?? false,
    });
    context.setDefaultTimeout(WAIT_MS);
    context.setDefaultNavigationTimeout(10_000);
    const page = await context.newPage();
    const log = { requests: [] as SeenRequest[], errors: [] as string[] };
    page.on('request', (r) => log.requests.push({ url: r.url(), type: r.resourceType() }));
    page.on('console', (m) => m.type() === 'error' && log.errors.push(m.text()));
    seen.set(page, log);
    await page.goto(`${base}/console`);
    await page.locator('#token').waitFor();
    return page;
  };
  return {
    gw,
    base,
    browser,
    signInPage,
    async signedIn(token, options) {
      const page = await signInPage(options);
      await page.fill('#token', token);
      await page.click('form.signin button[type=submit]');
      await page.locator('nav a[aria-current=page]').waitFor();
      await page.locator('main .loading').waitFor({ state: 'detached' });
      return page;
    },
    requests: (page) => seen.get(page)?.requests ?? [],
    errors: (page) => seen.get(page)?.errors ?? [],
    async stop() {
      await browser.close();
      await gw.stop();
    },
  };
}

/** Waits until an element matching `selector` contains `text` (case-sensitive, as written). */
export async function waitForText(page: Page, selector: string, text: string): Promise<void> {
  const escaped = text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  await page
    .locator(selector, { hasText: new RegExp(escaped) })
    .first()
    .waitFor();
}

/**
 * Waits until `expression` is truthy in the page. Polled through `page.evaluate`, which the
 * page's CSP does not govern (`page.waitForFunction` with a string evaluates it inside the
 * page, and the console's `script-src 'self'` refuses that).
 */
export async function waitUntil(page: Page, expression: string, timeoutMs = WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await page.evaluate<unknown>(expression).catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${expression}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
