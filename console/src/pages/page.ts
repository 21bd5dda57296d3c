import type { Session } from '../api.js';

/** What a page is given: who is signed in, the path segments after its name, and the query. */
export interface PageContext {
  session: Session;
  params: string[];
  query: URLSearchParams;
}

/** A console page: fills `root` (already in the document) from the admin API. */
export type Page = (root: HTMLElement, ctx: PageContext) => Promise<void>;

/** Whether the signed-in user may change things (the read-only token may not). */
export function canWrite(ctx: PageContext): boolean {
  return ctx.session.principal.kind === 'admin';
}
