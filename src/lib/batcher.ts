/**
 * Group commit for one kind of write: items that arrive while a batch is being written wait
 * and go together in the next one. Nothing waits on a timer: with no batch in flight an item
 * is written at once, alone; under load, one round trip (and one WAL flush) serves many
 * requests. `write` returns one outcome per item, in order; if it throws, every item of that
 * batch fails with the error.
 */
export interface Batcher<I, O> {
  submit(item: I): Promise<O>;
  /** Resolves when nothing is queued or in flight. */
  idle(): Promise<void>;
}

export function createBatcher<I, O>(write: (items: I[]) => Promise<O[]>, maxBatch: number): Batcher<I, O> {
  type Pending = { item: I; resolve: (o: O) => void; reject: (e: unknown) => void };
  let queue: Pending[] = [];
  let inFlight: Promise<void> | undefined;

  const run = (): Promise<void> | undefined => {
    if (queue.length === 0) return undefined;
    const batch = queue.slice(0, maxBatch);
    queue = queue.slice(batch.length);
    return write(batch.map((p) => p.item)).then(
      (outcomes) => batch.forEach((p, i) => p.resolve(outcomes[i]!)),
      (err: unknown) => batch.forEach((p) => p.reject(err)),
    );
  };
  const pump = () => {
    inFlight = run()?.finally(pump);
  };

  return {
    submit(item) {
      return new Promise<O>((resolve, reject) => {
        queue.push({ item, resolve, reject });
        if (!inFlight) pump();
      });
    },
    async idle() {
      while (inFlight) await inFlight;
    },
  };
}
