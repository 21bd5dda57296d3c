import type { Knex } from 'knex';

/** What api.calls cost since a time: the total, per hour, the top tasks and users, and what is still held. */
export interface SpendReport {
  since: string;
  total_usd: number;
  calls: number;
  hours: { hour: string; cost_usd: number; calls: number }[];
  top_tasks: { task_id: string; cost_usd: number; calls: number }[];
  top_users: { user_id: string; cost_usd: number; calls: number }[];
  reservations: { held: number; held_usd: number };
}

/** Read-only spend figures from the api.call audit and the budget reservations. */
export interface SpendQueries {
  report(since: Date, top: number): Promise<SpendReport>;
}

/** Creates the spend queries (final-gate audit rows carry the settled cost of each call). */
export function createSpendQueries(knex: Knex): SpendQueries {
  return {
    async report(since, top) {
      // The final gate's row of a call holds what the provider billed (0 when it failed).
      const settled = () => knex('api_audit').where({ gate: 'egress' }).where('at', '>=', since).whereNotNull('cost_usd');
      const cost = knex.raw('coalesce(sum(cost_usd), 0)::float8 as cost_usd');
      const calls = knex.raw('count(*)::int as calls');
      const [hours, tasks, users, held] = await Promise.all([
        settled().groupByRaw('1').orderByRaw('1').select(knex.raw("date_trunc('hour', at) as hour"), cost, calls),
        settled().whereNotNull('task_id').groupBy('task_id').orderBy('cost_usd', 'desc').limit(top).select('task_id', cost, calls),
        settled().whereNotNull('user_id').groupBy('user_id').orderBy('cost_usd', 'desc').limit(top).select('user_id', cost, calls),
        knex('budget_reservations')
          .where({ state: 'held' })
          .first(knex.raw('count(*)::int as held'), knex.raw('coalesce(sum(amount_micros), 0)::float8 / 1e6 as held_usd')),
      ]);
      const series = (hours as { hour: Date; cost_usd: number; calls: number }[]).map((h) => ({
        ...h,
        hour: new Date(h.hour).toISOString(),
      }));
      return {
        since: since.toISOString(),
        total_usd: series.reduce((n, h) => n + h.cost_usd, 0),
        calls: series.reduce((n, h) => n + h.calls, 0),
        hours: series,
        top_tasks: tasks as SpendReport['top_tasks'],
        top_users: users as SpendReport['top_users'],
        reservations: held as SpendReport['reservations'],
      };
    },
  };
}
