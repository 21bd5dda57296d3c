/**
 * The shapes of the ids the gateway accepts from callers, in one place so every route and
 * service refuses the same strings.
 */

/** A UUID in its canonical 8-4-4-4-12 hex form; either case (PostgreSQL prints lowercase). */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether `value` is a UUID (job, lease, request, decision and credential ids). */
export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}

/** The longest task id anything accepts (jobs, `api.call`, budgets, audit filters). */
export const TASK_ID_MAX = 256;

/** A task id: 1 to {@link TASK_ID_MAX} letters, digits or `_.:@/-`, starting with a letter or digit. */
export const TASK_ID = new RegExp(`^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,${TASK_ID_MAX - 1}}$`);

/** Whether `value` is a task id. */
export function isTaskId(value: unknown): value is string {
  return typeof value === 'string' && TASK_ID.test(value);
}
