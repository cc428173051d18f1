// The SQLite connection the job store and the outbox share: opened in WAL mode and migrated, with
// every statement prepared once, and one transaction helper that knows which commits may skip the
// wait for the disk (ADR-0015).

import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import { migrate } from "./schema.ts";

export type Params = Record<string, SQLInputValue>;

export interface DbOptions {
  /**
   * SQLite's `synchronous` pragma. FULL (the default) makes every accepted job survive a power
   * loss; NORMAL survives a crash of foreman but may lose the last commits if the machine dies.
   */
  synchronous?: "FULL" | "NORMAL";
  /** Told when a transaction rolls back, so caches of what it wrote can be dropped. */
  onRollback?: () => void;
  /**
   * Who checkpoints the WAL: SQLite, inside whichever commit takes it past 1000 pages (the
   * default), or the owner, through `checkpoint` (the daemon's worker does it off the request
   * path); SQLite then steps in only past WAL_BACKSTOP pages.
   */
  checkpoints?: "sqlite" | "owner";
}

/** With the owner checkpointing, the WAL size (pages) at which SQLite does it anyway. */
export const WAL_BACKSTOP = 4000;

/** What a checkpoint did: WAL frames before it, frames copied, and whether a reader held it up. */
export interface CheckpointResult {
  frames: number;
  copied: number;
  busy: boolean;
}

export class Db {
  readonly sqlite: DatabaseSync;
  readonly #stmts = new Map<string, StatementSync>();
  readonly #synchronous: "FULL" | "NORMAL";
  readonly #onRollback?: () => void;
  /** What runs once the transaction under way has committed (afterCommit). */
  #committed: (() => void)[] = [];
  /** Commits since the last checkpoint, and when the last one was (performance.now()). */
  #walCommits = 0;
  #lastCommit = 0;

  constructor(path: string, options: DbOptions = {}) {
    this.sqlite = new DatabaseSync(path, { enableForeignKeyConstraints: true });
    this.sqlite.exec("PRAGMA journal_mode = WAL");
    this.#synchronous = options.synchronous ?? "FULL";
    this.#onRollback = options.onRollback;
    this.sqlite.exec(`PRAGMA synchronous = ${this.#synchronous}`);
    this.sqlite.exec("PRAGMA busy_timeout = 5000");
    migrate(this.sqlite);
    if (options.checkpoints === "owner") {
      this.sqlite.exec(`PRAGMA wal_autocheckpoint = ${WAL_BACKSTOP}`);
    }
    // The resting level is NORMAL: most commits (sync jobs' rows, delivery bookkeeping) need no
    // wait for the disk, and each durable one raises the level around itself (tx). Every write
    // goes through tx, so nothing commits at the resting level that should not.
    this.sqlite.exec("PRAGMA synchronous = NORMAL");
  }

  close(): void {
    if (this.sqlite.isOpen) this.sqlite.close();
  }

  /** The statement for `sql`, prepared on first use and reused after. */
  stmt(sql: string): StatementSync {
    let st = this.#stmts.get(sql);
    if (!st) {
      st = this.sqlite.prepare(sql);
      this.#stmts.set(sql, st);
    }
    return st;
  }

  /**
   * Runs `fn` once the transaction under way commits, or at once outside a transaction; dropped
   * if it rolls back. For news that must not be heard before the change is durable and visible
   * (a watcher told inside the transaction could read a row that is then rolled back). `fn` must
   * not throw: the commit it follows stands either way.
   */
  afterCommit(fn: () => void): void {
    if (this.sqlite.isTransaction) this.#committed.push(fn);
    else fn();
  }

  /**
   * Runs `fn` in one IMMEDIATE transaction; rolls back when it throws. A durable commit (the
   * default) waits for the disk (synchronous=FULL, unless the store was opened NORMAL); with
   * `durable: false` it does not: it survives a crash of foreman, and reaches the disk with the
   * next durable commit or checkpoint (ADR-0015). Inside a transaction already, `fn` joins it.
   */
  tx<T>(fn: () => T, options: { durable?: boolean } = {}): T {
    if (this.sqlite.isTransaction) return fn();
    // SQLite refuses to change the safety level inside a transaction, so it is set around it,
    // from the connection's resting NORMAL: a commit that need not wait sets nothing.
    const strict = options.durable !== false && this.#synchronous === "FULL";
    // Prepared once and reused: exec() would parse these statements on every transaction.
    if (strict) this.stmt("PRAGMA synchronous = FULL").run();
    let out: T;
    try {
      this.stmt("BEGIN IMMEDIATE").run();
      try {
        out = fn();
        this.stmt("COMMIT").run();
      } catch (err) {
        if (this.sqlite.isTransaction) this.sqlite.exec("ROLLBACK");
        this.#committed = [];
        this.#onRollback?.();
        throw err;
      }
    } finally {
      if (strict) this.stmt("PRAGMA synchronous = NORMAL").run();
    }
    this.#walCommits++;
    this.#lastCommit = performance.now();
    const committed = this.#committed;
    this.#committed = [];
    for (const after of committed) after();
    return out;
  }

  /** Commits since the last checkpoint attempt, and how long ago the last one was (ms). */
  wal(): { commits: number; quietMs: number } {
    return { commits: this.#walCommits, quietMs: performance.now() - this.#lastCommit };
  }

  /**
   * Copies the WAL into the database file (with its fsyncs). PASSIVE copies what it can without
   * waiting; TRUNCATE also empties the WAL file, for when nothing else is going on. The next
   * write starts the WAL from its beginning once all of it was copied.
   */
  checkpoint(mode: "PASSIVE" | "TRUNCATE"): CheckpointResult {
    const row = this.stmt(`PRAGMA wal_checkpoint(${mode})`).get()!;
    const result = {
      frames: Number(row.log),
      copied: Number(row.checkpointed),
      busy: Number(row.busy) !== 0,
    };
    // Counted from this attempt, whatever it achieved: a checkpoint held up by a reader is tried
    // again after more commits, never in a loop.
    this.#walCommits = 0;
    return result;
  }
}
