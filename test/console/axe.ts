import { createRequire } from 'node:module';
import type { AxeResults, Result } from 'axe-core';
import type { Page } from 'playwright-core';

/** axe-core's bundle, served to the page from node_modules by the test (never fetched from the network). */
const AXE_SCRIPT = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
/** The rule sets checked: WCAG 2.0 and 2.1, levels A and AA. */
export const WCAG_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
/** Impacts that fail a test; moderate and minor findings are reported, not failed. */
const FAILING = new Set(['serious', 'critical']);

/** What axe found on one page: the failing violations and every other one, each as one readable line. */
export interface AxeFindings {
  failing: string[];
  other: string[];
  passed: number;
}

/**
 * Runs axe-core on the page as it stands. The page's context must bypass the console's CSP
 * (the injected script is not from the gateway); the CSP itself is asserted elsewhere.
 */
export async function runAxe(page: Page): Promise<AxeFindings> {
  if (!(await page.evaluate<boolean>(`'axe' in window`))) await page.addScriptTag({ path: AXE_SCRIPT });
  const results = await page.evaluate<AxeResults>(
    `axe.run(document, { runOnly: { type: 'tag', values: ${JSON.stringify(WCAG_TAGS)} }, resultTypes: ['violations'] })`,
  );
  const lines = (r: Result) => `${r.impact ?? 'unknown'} ${r.id}: ${r.help} (${r.nodes.map((n) => n.target.join(' ')).join(', ')})`;
  return {
    failing: results.violations.filter((r) => FAILING.has(r.impact ?? '')).map(lines),
    other: results.violations.filter((r) => !FAILING.has(r.impact ?? '')).map(lines),
    passed: results.passes.length,
  };
}
