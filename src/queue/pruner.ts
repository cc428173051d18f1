// Retention: deletes finished jobs (with their artifacts and webhook events, by cascade) once they
// are older than FOREMAN_JOB_TTL and no webhook event of theirs is still pending. Queued and running
// jobs are never touched: the store's query only sees rows with a finished_at, which the schema
// allows for terminal states alone. It runs on a fixed interval, so a job kept for its pending
// event is looked at again each round, never in a tight loop.

import { sleep } from "../async.ts";
import { errorMessage, type Logger } from "../log.ts";
import type { Store } from "./store.ts";

export interface PrunerOptions {
  store: Store;
  log: Logger;
  ttl: number;
  interval?: number;
  now?: () => number;
}

export class Pruner {
  readonly #o: PrunerOptions;
  readonly #now: () => number;

  constructor(options: PrunerOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
  }

  /** Deletes every expired job; returns how many. */
  runOnce(): number {
    const cutoff = this.#now() - this.#o.ttl;
    let total = 0;
    for (let n = this.#o.store.prune(cutoff); n > 0; n = this.#o.store.prune(cutoff)) total += n;
    if (total > 0) this.#o.log.info("pruned finished jobs", { count: total });
    return total;
  }

  async start(signal: AbortSignal): Promise<void> {
    const interval = this.#o.interval ?? Math.min(60_000, Math.max(1000, this.#o.ttl / 10));
    while (!signal.aborted) {
      try {
        this.runOnce();
      } catch (err) {
        // A delete can fail too when the disk is full; the next round tries again.
        this.#o.log.error("cannot prune finished jobs", { error: errorMessage(err) });
      }
      await sleep(interval, signal);
    }
  }
}
