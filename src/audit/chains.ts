/** One append-only, hash-chained table: its name in the database, in output, and its time column. */
export interface AuditChain {
  table: string;
  name: string;
  /** When a row was written: what `audit prune --before` compares with. */
  timeColumn: string;
}

/**
 * Every hash-chained table the gateway writes. A checkpoint covers each, `audit verify` checks
 * each, `audit prune` trims each; a new chained table is one line here (and its append-only
 * trigger taught the prune cut, as in the audit checkpoints migration).
 */
export const AUDIT_CHAINS: readonly AuditChain[] = [
  { table: 'decision_log', name: 'decision log', timeColumn: 'timestamp' },
  { table: 'api_audit', name: 'api audit', timeColumn: 'at' },
  { table: 'tool_audit', name: 'tool audit', timeColumn: 'at' },
  { table: 'worker_audit', name: 'worker audit', timeColumn: 'at' },
];
