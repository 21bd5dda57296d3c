import { ROUTE_TABLE, type RouteEntry } from '../routes.js';

/** One documented route: a route table entry (the table is the one source of truth). */
export type Operation = RouteEntry;

/** The access kinds of operations, each mapped to security schemes in the document. */
export type { Access as Auth } from '../server/route.js';

/** Every route the gateway serves, on the roles that serve it: the route table. */
export const OPERATIONS: readonly Operation[] = ROUTE_TABLE;
