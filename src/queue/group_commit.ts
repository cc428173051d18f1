// Group commit for job submissions (ADR-0015): inserts asked for in the same turn of the event loop
// are written in one transaction, so one fsync covers many 202s. Each caller still gets its job only
// after the transaction holding it has committed.

import { setImmediate } from "node:timers";
import type { Job, NewJob, Store } from "./store.ts";

interface Waiting {
  input: NewJob;
  resolve(job: Job): void;
  reject(err: unknown): void;
}

export class GroupCommit {
  readonly #store: Store;
  readonly #maxBatch: number;
  #waiting: Waiting[] = [];
  #scheduled = false;

  /** `maxBatch`: a group this large commits at once (default 256). */
  constructor(store: Store, options: { maxBatch?: number } = {}) {
    this.#store = store;
    this.#maxBatch = options.maxBatch ?? 256;
  }

  /** Jobs accepted for the next commit but not yet stored (they count against the queue limit). */
  get pending(): number {
    return this.#waiting.length;
  }

  /** Resolves with the stored job once the transaction that holds it has committed. */
  insert(input: NewJob): Promise<Job> {
    const { promise, resolve, reject } = Promise.withResolvers<Job>();
    this.#waiting.push({ input, resolve, reject });
    if (this.#waiting.length >= this.#maxBatch) {
      this.flush();
    } else if (!this.#scheduled) {
      // setImmediate runs once the submissions that arrived with this one have had their turn
      // (microseconds, unlike a timer, which costs a millisecond or more).
      this.#scheduled = true;
      setImmediate(() => this.flush());
    }
    return promise;
  }

  /** Commits every waiting insert now. */
  flush(): void {
    this.#scheduled = false;
    const group = this.#waiting;
    this.#waiting = [];
    if (group.length === 0) return;
    let jobs: Job[];
    try {
      jobs = this.#store.insertJobs(group.map((w) => w.input));
    } catch {
      // The group rolled back as a whole: store each alone, so a bad row fails only its caller.
      for (const w of group) {
        try {
          w.resolve(this.#store.insertJob(w.input));
        } catch (err) {
          w.reject(err);
        }
      }
      return;
    }
    // insertJobs returns one job per input, in order.
    group.forEach((w, i) => w.resolve(jobs[i]!));
  }
}
