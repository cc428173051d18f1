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

/**
 * Runs work right after the event loop's next turn for I/O: a message the loop sends itself on a
 * MessageChannel arrives microseconds later, once pending network writes (an answer, a request to
 * the target) have gone out, where a zero timer waits about 2 ms in Deno and an immediate runs
 * before them. The channel keeps the process alive until close().
 */
export class NextTurn {
  readonly #channel = new MessageChannel();
  #queued: (() => void)[] = [];

  constructor() {
    this.#channel.port1.onmessage = () => {
      const run = this.#queued;
      this.#queued = [];
      for (const fn of run) fn();
    };
  }

  /** Runs `fn` after the next turn; `fn` must not throw. */
  run(fn: () => void): void {
    if (this.#queued.push(fn) === 1) this.#channel.port2.postMessage(null);
  }

  /** Resolves after the next turn. */
  wait(): Promise<void> {
    return new Promise((resolve) => this.run(resolve));
  }

  /** Lets the process end; work still queued runs never. */
  close(): void {
    this.#queued = [];
    this.#channel.port1.close();
    this.#channel.port2.close();
  }
}
