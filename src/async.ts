// Waiting that never holds up a shutdown: every wait here ends early when its signal aborts, and no
// timer outlives the wait it serves. The background loops (worker, dispatcher, poller, pruner)
// sleep through these helpers.

/** Resolves after `ms`, or early when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}

/**
 * Settles like `promise` when it settles within `ms`; otherwise resolves with undefined once `ms`
 * have passed (the promise keeps running). The timer is cleared either way.
 */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((resolve) =>
    timer = setTimeout(() => resolve(undefined), ms)
  );
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A background loop's sleep that other parts can cut short: `sleep` lasts until its deadline, until
 * `wake()` is called, or until its signal aborts. A wake that comes while the loop is awake (busy
 * with a step) is kept, and ends the next sleep at once, so news is never lost between steps. A
 * sleep costs one timer and one listener on the loop's signal; a wake is a plain call.
 */
export class WakeableSleep {
  #wake?: () => void;
  #woken = false;

  /** Whether the loop is asleep now (not busy with a step). */
  get sleeping(): boolean {
    return this.#wake !== undefined;
  }

  /** Ends the current sleep now, or the next one if the loop is not sleeping. */
  wake(): void {
    if (this.#wake) this.#wake();
    else this.#woken = true;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (this.#woken || signal?.aborted) {
      this.#woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      signal?.addEventListener("abort", done, { once: true });
      this.#wake = done;
    });
  }
}
