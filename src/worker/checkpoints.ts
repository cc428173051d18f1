// The worker's WAL checkpoints, off the request path (ADR-0019): a PASSIVE one right after a
// request went to the target once commits have piled up, and a TRUNCATE one, which empties the WAL
// file, once the database has been quiet for a while. The store leaves them to the worker.

import { NextTurn } from "../async.ts";
import { errorMessage, type Logger } from "../log.ts";
import type { Store } from "../queue/store.ts";

/** Commits after which the worker checkpoints the WAL (a few hundred pages, a couple of MiB). */
const CHECKPOINT_EVERY = 32;
/** Quiet time after which the worker checkpoints and empties the WAL file. */
const CHECKPOINT_QUIET = 1000;

export class Checkpoints {
  readonly #store: Store;
  readonly #log: Logger;
  /** A checkpoint is scheduled (soon). */
  #scheduled = false;
  /** Work for after the event loop's next turn for I/O, while the worker's loop runs (start). */
  #turn?: NextTurn;
  /** The worker loop's signal: once it aborts, the store may be closed. */
  #signal?: AbortSignal;

  constructor(options: { store: Store; log: Logger }) {
    this.#store = options.store;
    this.#log = options.log;
  }

  /** The worker's loop runs until `signal` aborts. */
  start(signal: AbortSignal): void {
    this.#signal = signal;
    this.#turn = new NextTurn();
  }

  /** The worker's loop has ended: a checkpoint still scheduled never runs. */
  stop(): void {
    this.#turn?.close();
    this.#turn = undefined;
  }

  /**
   * Checkpoints the WAL once enough commits have piled up, right after a request went to the
   * target (NextTurn: once it is written): the worker would only wait now, so no caller's commit
   * or answer pays for the copy and its fsyncs, unless the target answers sooner than it takes.
   */
  soon(): void {
    if (this.#scheduled || !this.#turn) return;
    if (this.#store.wal().commits < CHECKPOINT_EVERY) return;
    this.#scheduled = true;
    this.#turn.run(() => {
      this.#scheduled = false;
      this.checkpoint("PASSIVE");
    });
  }

  /**
   * How long until the database has been quiet long enough for a TRUNCATE checkpoint (0 or less:
   * it has), or undefined when nothing was committed since the last checkpoint.
   */
  untilQuiet(): number | undefined {
    const wal = this.#store.wal();
    return wal.commits > 0 ? CHECKPOINT_QUIET - wal.quietMs : undefined;
  }

  checkpoint(mode: "PASSIVE" | "TRUNCATE"): void {
    if (this.#signal?.aborted) return; // the store may be closed by now
    const started = performance.now();
    try {
      const r = this.#store.checkpoint(mode);
      this.#log.debug("wal checkpointed", {
        mode,
        frames: r.frames,
        copied: r.copied,
        busy: r.busy,
        ms: Math.round((performance.now() - started) * 100) / 100,
      });
    } catch (err) {
      // SQLite checkpoints anyway past its backstop; the next attempt comes with more commits.
      this.#log.warn("cannot checkpoint the database", { mode, error: errorMessage(err) });
    }
  }
}
