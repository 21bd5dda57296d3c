import { randomUUID } from 'node:crypto';
import { micros } from './budgets.js';
import type { Hold, Ledger, RateTake, Refusal } from './ledger.js';

/**
 * Prepaid blocks: admission without a database round trip for calls that come in bursts.
 *
 * When the same holds and rate takes (one task, user, model, subject and credential) are
 * admitted often, this replica reserves a block for several calls at once: one ordinary
 * ledger admission of k times the call's worst case and k times its rate takes, its takes
 * dated at the end of the block's draw window. Calls that follow draw from the block in
 * memory until the window ends; each settles into it, giving back what it did not spend.
 * Once the window has ended and its last call has settled, the block is settled like a call:
 * charged what its calls cost, refunding the tokens and calls it did not use.
 *
 * Why this never overspends and never lets a rate limit through:
 *  - the block's worst case is reserved in PostgreSQL, against every budget, before any call
 *    draws from it; a call draws only what is left of it;
 *  - its rate takes are counted from the end of its draw window, so every call it admits is
 *    inside the window its unit is counted in for the whole 60 s after that call;
 *  - a block nobody settles (this replica died) lapses and is charged in full, as a call does.
 * What it costs: until it is settled, a block holds more than its calls have used, so other
 * replicas see less room (never more). A block is therefore only taken while the budget's
 * and each limit's room is many times what the block holds (`share`), never across a budget
 * period's end, and spend and soft-limit alerts land when the block settles (within its draw
 * window plus its last call). Near a limit every call is admitted alone, exactly as before.
 */
export interface BlockAdmission {
  /** Admits a call from a block (opening one when its burst warrants it), or alone; undefined when admitted. */
  admit(call: BlockCall): Promise<Refusal | undefined>;
  /**
   * Settles a call that drew from a block, into the block; false when the call did not draw
   * from one (it settles in the ledger itself).
   */
  settle(callId: string, costUsd: number, state: 'settled' | 'released', tokenRefund: number): boolean;
  /** Ends every block's draw window now and resolves once each has been settled in the ledger. */
  flush(): Promise<void>;
}

/** One call to admit, as the final gate planned it, with the room its budgets had when it was decided. */
export interface BlockCall {
  callId: string;
  holds: Hold[];
  amountUsd: number;
  takes: RateTake[];
  expiresAt: Date;
  /** The least any held budget had left when the call was decided; null: unknown (no block). */
  roomUsd: number | null;
  /** When the first held budget's period ends (ms since the epoch); null: none ends. */
  periodEndsAt: number | null;
}

/** How blocks are sized. */
export interface BlockOptions {
  /** How long a block admits calls; 0 turns blocks off. */
  drawMs: number;
  /** The most calls one block admits. */
  maxCalls: number;
  /** The most a block takes of a budget's room, and of a rate limit, as a fraction. */
  share: number;
  /** Told when a block could not be settled (it lapses and is charged in full). */
  onSettleError?: (blockId: string, err: unknown) => void;
}

/** The defaults: a second's burst, at most 64 calls, a tenth of any room. */
export const BLOCK_DEFAULTS: BlockOptions = { drawMs: 1000, maxCalls: 64, share: 0.1 };

/** The least a draw window may last for a block to be worth its admission. */
const MIN_WINDOW_MS = 50;
/** How many blocks a call waits for (each filled by calls ahead of it) before it is admitted alone. */
const MAX_ROUNDS = 8;

interface Block {
  id: string;
  key: string;
  openedAt: number;
  drawUntil: number;
  /** Calls it was opened for. */
  calls: number;
  /** Money it can still admit, micros. */
  moneyLeft: number;
  /** Calls it can still admit. */
  callsLeft: number;
  /** Tokens its token takes can still admit (Infinity with none). */
  tokensLeft: number;
  costMicros: number;
  settledAny: boolean;
  /** Calls drawn and not yet settled. */
  inFlight: number;
  closed: boolean;
  finished: boolean;
  timer?: NodeJS.Timeout;
}

interface Drawn {
  block: Block;
  reservedMicros: number;
}

/** Calls per key in the current and the last whole second: the burst a block is sized for. */
function createDemand(now: () => number) {
  let second = Math.floor(now() / 1000);
  let current = new Map<string, number>();
  let last = new Map<string, number>();
  return {
    /** Counts one call of `key`. */
    note(key: string): void {
      this.turn();
      current.set(key, (current.get(key) ?? 0) + 1);
    },
    /** The calls of `key` in the last second, or in this one if more. */
    of(key: string): number {
      this.turn();
      return Math.max(current.get(key) ?? 0, last.get(key) ?? 0);
    },
    turn(): void {
      const s = Math.floor(now() / 1000);
      if (s === second) return;
      last = s === second + 1 ? current : new Map();
      current = new Map();
      second = s;
    },
  };
}

/**
 * The shape of one call's takes a block can scale: every non-token take is one unit (a call),
 * every token take the same token count. Undefined for any other shape (admitted alone).
 */
function takeShape(takes: RateTake[]): { tokens: number } | undefined {
  let tokens: number | undefined;
  for (const t of takes) {
    if (!t.tokens) {
      if (t.amount !== 1) return undefined;
    } else if (tokens === undefined) tokens = t.amount;
    else if (tokens !== t.amount) return undefined;
  }
  return { tokens: tokens ?? 0 };
}

/** What identifies calls that may share a block: the same holds and the same limits on the same keys. */
function blockKey(holds: Hold[], takes: RateTake[]): string {
  let key = '';
  for (const h of holds) key += `${h.scope}\u0000${h.subject_id}\u0000${h.model ?? ''}\u0000${h.required ? 1 : 0}\u0001`;
  key += '\u0002';
  for (const t of takes) key += `${t.key}\u0000${t.limit}\u0000${t.tokens ? 1 : 0}\u0001`;
  return key;
}

/** Prepaid blocks over `ledger`, on the ledger's clock. */
export function createBlockAdmission(ledger: Ledger, options: BlockOptions): BlockAdmission {
  const now = () => ledger.now();
  const demand = createDemand(now);
  // Per key, the blocks calls draw from, oldest first: the current one and, once it is half
  // used, the next (opened ahead, so no call of a steady stream waits for an admission).
  const open = new Map<string, Block[]>();
  const opening = new Map<string, Promise<Block | undefined>>();
  const waiting = new Map<string, number>();
  const drawn = new Map<string, Drawn>();
  const settling = new Set<Promise<unknown>>();

  const draw = (block: Block | undefined, call: BlockCall, tokens: number): boolean => {
    const amount = micros(call.amountUsd);
    if (!block || block.closed || now() >= block.drawUntil) return false;
    if (block.moneyLeft < amount || block.callsLeft < 1 || block.tokensLeft < tokens) return false;
    block.moneyLeft -= amount;
    block.callsLeft -= 1;
    block.tokensLeft -= tokens;
    block.inFlight += 1;
    drawn.set(call.callId, { block, reservedMicros: amount });
    return true;
  };

  const finish = (block: Block) => {
    if (!block.closed || block.inFlight > 0 || block.finished) return;
    block.finished = true;
    const tokenRefund = Number.isFinite(block.tokensLeft) ? block.tokensLeft : 0;
    const p = ledger
      .settle(block.id, block.costMicros / 1e6, block.settledAny ? 'settled' : 'released', tokenRefund, block.callsLeft)
      .then(
        () => undefined,
        (err: unknown) => options.onSettleError?.(block.id, err),
      )
      .finally(() => settling.delete(p));
    settling.add(p);
  };

  const close = (block: Block) => {
    if (block.closed) return;
    block.closed = true;
    clearTimeout(block.timer);
    const list = open.get(block.key)?.filter((b) => b !== block) ?? [];
    if (list.length > 0) open.set(block.key, list);
    else open.delete(block.key);
    finish(block);
  };

  /** How many calls a block for `call` should admit: 0 or 1 means it is admitted alone. */
  const sizeOf = (call: BlockCall, tokens: number, burst: number): number => {
    if (call.roomUsd === null || call.amountUsd <= 0) return 0;
    let k = Math.min(options.maxCalls, burst);
    k = Math.min(k, Math.floor((options.share * micros(call.roomUsd)) / micros(call.amountUsd)));
    for (const t of call.takes) k = Math.min(k, Math.floor((options.share * t.limit) / (t.tokens ? Math.max(tokens, 1) : 1)));
    return k;
  };

  const openBlock = async (key: string, call: BlockCall, k: number, tokens: number, drawUntil: number): Promise<Block | undefined> => {
    const id = randomUUID();
    const at = new Date(drawUntil);
    const takes = call.takes.map((t) => ({ ...t, amount: t.amount * k, at }));
    const expiresAt = new Date(drawUntil + Math.max(0, call.expiresAt.getTime() - now()));
    const refused = await ledger.admit(id, call.holds, (micros(call.amountUsd) * k) / 1e6, takes, expiresAt);
    if (refused) return undefined;
    const block: Block = {
      id,
      key,
      openedAt: now(),
      drawUntil,
      calls: k,
      moneyLeft: micros(call.amountUsd) * k,
      callsLeft: k,
      tokensLeft: call.takes.some((t) => t.tokens) ? tokens * k : Infinity,
      costMicros: 0,
      settledAny: false,
      inFlight: 0,
      closed: false,
      finished: false,
    };
    // A block whose window ends while it waits for its admission closes at once.
    block.timer = setTimeout(() => close(block), Math.max(0, drawUntil - now()));
    block.timer.unref();
    for (let list = open.get(key); list && list.length >= 2; list = open.get(key)) close(list[0]!);
    open.set(key, [...(open.get(key) ?? []), block]);
    return block;
  };

  const drawOpen = (key: string, call: BlockCall, tokens: number): boolean => {
    const list = open.get(key);
    if (!list) return false;
    for (const block of list) {
      if (draw(block, call, tokens)) {
        const next = list.some((b) => b !== block && live(b));
        if (!next && !opening.has(key) && halfUsed(block)) ahead(key, call, tokens);
        return true;
      }
    }
    return false;
  };

  const live = (block: Block) => !block.closed && now() < block.drawUntil && block.callsLeft > 0;
  const halfUsed = (block: Block) => now() - block.openedAt >= (block.drawUntil - block.openedAt) / 2 || block.callsLeft * 2 < block.calls;

  /** How many calls a block for `call` opened now should admit, and until when; k < 2: none. */
  const plan = (key: string, call: BlockCall, tokens: number) => {
    const t = now();
    const drawUntil = Math.min(t + options.drawMs, (call.periodEndsAt ?? Infinity) - 1);
    // Sized for the burst the last second saw, and at least for the calls already waiting.
    const burst = Math.max(Math.ceil((demand.of(key) * (drawUntil - t)) / 1000), (waiting.get(key) ?? 0) + 1);
    return { drawUntil, k: drawUntil - t >= MIN_WINDOW_MS ? sizeOf(call, tokens, burst) : 0 };
  };

  const startOpening = (key: string, call: BlockCall, k: number, tokens: number, drawUntil: number) => {
    const p = openBlock(key, call, k, tokens, drawUntil).finally(() => opening.delete(key));
    opening.set(key, p);
    return p;
  };

  /** Opens the next block of `key` while the current one still admits (a refusal leaves things as they are). */
  const ahead = (key: string, call: BlockCall, tokens: number) => {
    const { drawUntil, k } = plan(key, call, tokens);
    if (k >= 2) startOpening(key, call, k, tokens, drawUntil).catch(() => undefined);
  };

  return {
    async admit(call) {
      const alone = () => ledger.admit(call.callId, call.holds, call.amountUsd, call.takes, call.expiresAt);
      const shape = options.drawMs > 0 ? takeShape(call.takes) : undefined;
      if (!shape) return alone();
      const key = blockKey(call.holds, call.takes);
      demand.note(key);
      // A call waits for the block being opened for its key rather than going alone, so one
      // replica never holds room in a block while refusing a call that room would admit.
      for (let round = 0; round < MAX_ROUNDS; round++) {
        if (drawOpen(key, call, shape.tokens)) return undefined;
        const pending = opening.get(key);
        if (pending) {
          waiting.set(key, (waiting.get(key) ?? 0) + 1);
          // A key nobody waits on is dropped: one entry per task ever seen would only grow.
          const block = await pending.finally(() => {
            const left = waiting.get(key)! - 1;
            if (left > 0) waiting.set(key, left);
            else waiting.delete(key);
          });
          if (draw(block, call, shape.tokens)) return undefined;
          if (!block) return alone();
          continue;
        }
        const { drawUntil, k } = plan(key, call, shape.tokens);
        if (k < 2) return alone();
        const block = await startOpening(key, call, k, shape.tokens, drawUntil);
        // Refused (the budget or a limit has less room than it asked): the call is decided alone.
        if (!block) return alone();
        if (draw(block, call, shape.tokens)) return undefined;
      }
      return alone();
    },

    settle(callId, costUsd, state, tokenRefund) {
      const d = drawn.get(callId);
      if (!d) return false;
      drawn.delete(callId);
      const { block } = d;
      const cost = state === 'settled' ? micros(costUsd) : 0;
      block.moneyLeft += d.reservedMicros - cost;
      block.costMicros += cost;
      block.settledAny ||= state === 'settled';
      block.tokensLeft += tokenRefund;
      block.inFlight -= 1;
      finish(block);
      return true;
    },

    async flush() {
      await Promise.all([...opening.values()]);
      for (const block of [...open.values()].flat()) close(block);
      // Calls still drawing settle on their own; their blocks follow them.
      while (drawn.size > 0) await new Promise((resolve) => setTimeout(resolve, 10));
      while (settling.size > 0) await Promise.all([...settling]);
    },
  };
}
