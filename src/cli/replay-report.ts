import type { ReplayReport } from '../replay/index.js';

const COLUMNS = ['evaluated', 'unchanged', 'allow_to_deny', 'deny_to_allow', 'reasons_changed', 'masked', 'errors'] as const;

/**
 * Prints a replay report on stdout: the JSON answer with `json`, else a table per entrypoint
 * and the sampled changes. Masked decisions are always called out on stderr: they were not
 * compared, so a clean table does not vouch for them.
 */
export function printReport(report: ReplayReport, json: boolean): void {
  const entries = Object.entries(report.entrypoints);
  if (json) console.log(JSON.stringify(report, null, 2));
  else console.log(renderTable(report));
  const masked = entries.reduce((n, [, e]) => n + e.masked, 0);
  if (masked > 0) {
    const where = entries.filter(([, e]) => e.masked > 0).map(([path, e]) => `${path}: ${e.masked}`);
    console.error(
      `cynode-gateway: ${masked} decisions had masked input fields (decisionLog.maskPaths) and were not compared (${where.join(', ')})`,
    );
  }
}

function renderTable(report: ReplayReport): string {
  const lines = [
    `candidate ${report.candidate.revision} (${report.candidate.digest.slice(0, 12)}): ${report.total} decisions since ${report.since}`,
  ];
  const entries = Object.entries(report.entrypoints).sort(([a], [b]) => a.localeCompare(b));
  const width = Math.max(10, ...entries.map(([path]) => path.length));
  lines.push(['entrypoint'.padEnd(width), ...COLUMNS].join('  '));
  for (const [path, e] of entries) lines.push([path.padEnd(width), ...COLUMNS.map((c) => String(e[c]).padStart(c.length))].join('  '));
  for (const [path, e] of entries) {
    for (const s of e.samples) {
      const verdict = (v: { allow: boolean; reasons: string[] }) => `${v.allow ? 'allow' : 'deny'} [${v.reasons.join(', ')}]`;
      lines.push(`  ${s.decision_id} ${path}: ${verdict(s.before)} -> ${verdict(s.after)}`);
    }
  }
  return lines.join('\n');
}
