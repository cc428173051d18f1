// The durable queue's jobs: every query and write of the jobs table. Jobs change state only
// through `transition`, which runs a named entry of transitions.ts guarded by the state it expects
// and, in the same transaction, stores the artifacts it produced and appends the event that reports
// the change to the outbox, so an event can be neither lost nor invented; once it commits,
// listeners hear of it (ADR-0017). All of foreman's SQL is in src/queue/.

import type { DatabaseSync } from "node:sqlite";
import { monotonicFactory } from "ulid";
import { type Artifact, Artifacts } from "./artifacts.ts";
import { type CheckpointResult, Db, type Params } from "./db.ts";
import { Outbox } from "./outbox.ts";
import { queuePositions } from "./positions.ts";
import {
  ACTIVE_STATES,
  type Endpoint,
  JOB_STATES,
  type JobKind,
  type JobState,
  OPEN_STATES,
  sqlList,
} from "./states.ts";
import {
  MOVED_COLUMNS,
  TransitionError,
  type TransitionName,
  TRANSITIONS,
  type TransitionSpec,
  type TransitionValues,
  UPDATE_SQL,
  type ValuesArg,
} from "./transitions.ts";

export type { Artifact, ArtifactMeta, ShownArtifact } from "./artifacts.ts";
export type { JobEvent, OutboxEvent, WebhookSummary } from "./outbox.ts";
export { TransitionError, type TransitionName, type TransitionValues } from "./transitions.ts";

/** A job as lists read it: every column but the request and the result. */
export interface JobSummary {
  id: string;
  kind: JobKind;
  endpoint: Endpoint;
  model: string;
  state: JobState;
  webhookUrl: string | null;
  /** JSON text of the caller's metadata object (in lists, null when over the list's limit). */
  metadata: string | null;
  idempotencyKey: string | null;
  requestHash: string | null;
  attempt: number;
  notBefore: number;
  error: string | null;
  createdAt: number;
  updatedAt: number;
  startedAt: number | null;
  finishedAt: number | null;
}

/**
 * A job as a transition leaves it: every column but the request, which a transition never reads
 * back (it can be large, and the worker has it already); the result only as the transition wrote
 * it (complete), since no other transition can follow a result.
 */
export interface MovedJob extends JobSummary {
  /** JSON text of the target's final response. */
  result: string | null;
}

export interface Job extends MovedJob {
  /** The request body as JSON text, exactly what the target will be sent (before keep_alive). */
  request: string;
}

/**
 * A job to move: its id, or its id and kind when the caller has them (the worker does), which
 * spares a transition from a single source state the read before its guarded UPDATE.
 */
export type JobRef = string | { id: string; kind: JobKind };

export interface NewJob {
  kind: JobKind;
  endpoint: Endpoint;
  model: string;
  request: string;
  webhookUrl?: string | null;
  metadata?: string | null;
  idempotencyKey?: string | null;
  requestHash?: string | null;
}

export interface ListFilter {
  state?: JobState;
  model?: string;
  before?: string;
  limit: number;
  /** Metadata larger than this many bytes is listed as null (it is never read). */
  metadataLimit: number;
}

/**
 * The columns a list reads. The bodies are stored last (schema 3), so none of these makes SQLite
 * walk a request or result; octet_length reads only a value's size.
 */
const SUMMARY_COLUMNS = `id, kind, endpoint, model, state, webhook_url, idempotency_key,
  request_hash, attempt, not_before, error, created_at, updated_at, started_at, finished_at,
  CASE WHEN octet_length(metadata) <= :metadata_limit THEN metadata END AS metadata`;

/**
 * Renders the body of the event that reports `job` entering its current state from `previous`
 * (null for a new job), with the job's artifacts (only a done job has any).
 */
export type EventRenderer = (
  job: MovedJob,
  event: { previous: JobState | null; artifacts: Artifact[] },
) => string;

export interface StoreOptions {
  /** Clock in epoch milliseconds; tests pass a fake one. */
  now?: () => number;
  /** Renders event bodies: the webhook event JSON, which watchers read too. */
  renderEvent: EventRenderer;
  /**
   * SQLite's `synchronous` pragma. FULL (the default) makes every accepted job survive a power
   * loss; NORMAL survives a crash of foreman but may lose the last commits if the machine dies.
   */
  synchronous?: "FULL" | "NORMAL";
  /** Who checkpoints the WAL (DbOptions.checkpoints): SQLite by default, or the daemon's worker. */
  checkpoints?: "sqlite" | "owner";
}

/** The start-up repair's sync and interrupted jobs, by what became of them. */
const OPEN_SYNC_JOBS = `SELECT * FROM jobs WHERE state IN ${
  sqlList(OPEN_STATES)
} AND kind = 'sync'`;
const ACTIVE_JOBS = `SELECT * FROM jobs WHERE state IN ${sqlList(ACTIVE_STATES)}`;

export class Store {
  /** The SQLite connection itself, for tests and checks that read the tables directly. */
  readonly db: DatabaseSync;
  /** The events of the jobs, written by transitions, read by watchers, sent by the dispatcher. */
  readonly outbox: Outbox;
  /** The files done jobs produced, written by the transition that completes a job. */
  readonly artifacts: Artifacts;
  readonly #db: Db;
  readonly #now: () => number;
  readonly #renderEvent: EventRenderer;
  readonly #eventListeners: ((jobId: string) => void)[] = [];
  readonly #ulid = monotonicFactory();
  /**
   * Queued jobs, kept in step by every write that changes the number, so the submit path's queue
   * limit check does not count a deep queue each time; undefined means "count again".
   */
  #queued: number | undefined;

  constructor(path: string, options: StoreOptions) {
    this.#now = options.now ?? Date.now;
    this.#renderEvent = options.renderEvent;
    this.#db = new Db(path, {
      synchronous: options.synchronous,
      checkpoints: options.checkpoints,
      onRollback: () => this.#queued = undefined, // the rolled-back writes may have moved it
    });
    this.db = this.#db.sqlite;
    this.outbox = new Outbox(this.#db, { now: this.#now, newId: () => this.newId() });
    this.artifacts = new Artifacts(this.#db);
  }

  close(): void {
    this.#db.close();
  }

  /** A new ULID, monotonic within this process so ids sort in creation order. */
  newId(): string {
    return this.#ulid(this.#now());
  }

  /** Commits since the last checkpoint, and how long the database has been quiet (Db.wal). */
  wal(): { commits: number; quietMs: number } {
    return this.#db.wal();
  }

  /** Checkpoints the WAL (Db.checkpoint). */
  checkpoint(mode: "PASSIVE" | "TRUNCATE"): CheckpointResult {
    return this.#db.checkpoint(mode);
  }

  /** Runs `fn` in one transaction (see Db.tx); the store's writes inside it join it. */
  tx<T>(fn: () => T, options: { durable?: boolean } = {}): T {
    return this.#db.tx(fn, options);
  }

  /**
   * Runs `fn`, which changes the jobs `jobs`, in one transaction as durable as the most demanding
   * of them needs (ADR-0015: sync jobs' rows skip the wait for the disk, async jobs' do not).
   */
  txFor<T>(jobs: readonly { kind: JobKind }[], fn: () => T): T {
    return this.#db.tx(fn, { durable: jobs.some((j) => j.kind !== "sync") });
  }

  #stmt(sql: string) {
    return this.#db.stmt(sql);
  }

  /**
   * Calls `listener` with a job's id each time an event of that job has been committed (a new job
   * or a transition), after the commit, in the order of the commits. It runs in the writer's
   * turn, so it must be quick and must not throw; it reads the event itself if it wants it.
   */
  onEvent(listener: (jobId: string) => void): void {
    this.#eventListeners.push(listener);
  }

  // ---- jobs ------------------------------------------------------------------------------------

  /** Stores a new queued job and its `queued` event. */
  insertJob(input: NewJob): Job {
    return this.txFor([input], () => this.#insert(input));
  }

  /**
   * Stores several new jobs in one transaction (group commit, ADR-0015): one fsync for all of them.
   * All or none are stored.
   */
  insertJobs(inputs: readonly NewJob[]): Job[] {
    return this.txFor(inputs, () => inputs.map((input) => this.#insert(input)));
  }

  #insert(input: NewJob): Job {
    const now = this.#now();
    const id = this.newId();
    const row = this.#stmt(
      `INSERT INTO jobs (id, kind, endpoint, model, state, request, webhook_url, metadata,
         idempotency_key, request_hash, created_at, updated_at)
       VALUES (:id, :kind, :endpoint, :model, 'queued', :request, :webhook_url, :metadata,
         :idempotency_key, :request_hash, :now, :now) RETURNING ${MOVED_COLUMNS}`,
    ).get({
      id,
      kind: input.kind,
      endpoint: input.endpoint,
      model: input.model,
      request: input.request,
      webhook_url: input.webhookUrl ?? null,
      metadata: input.metadata ?? null,
      idempotency_key: input.idempotencyKey ?? null,
      request_hash: input.requestHash ?? null,
      now,
    });
    if (this.#queued !== undefined) this.#queued++;
    const job: Job = { ...toSummary(row!), result: null, request: input.request };
    this.#recordEvent(job, null);
    return job;
  }

  get(id: string): Job | undefined {
    const row = this.#stmt("SELECT * FROM jobs WHERE id = ?").get(id);
    return row ? toJob(row) : undefined;
  }

  /**
   * Job `id` as its view shows it: without the request, which no view renders, and with the
   * result only when it is at most `resultLimit` bytes (null otherwise, as the view shows it), so
   * showing a job costs what the answer holds, not what the job holds.
   */
  shown(id: string, resultLimit: number): MovedJob | undefined {
    const row = this.#stmt(
      `SELECT ${MOVED_COLUMNS},
         CASE WHEN octet_length(result) <= :limit THEN result END AS result
       FROM jobs WHERE id = :id`,
    ).get({ id, limit: resultLimit });
    return row ? { ...toSummary(row), result: nullableString(row.result) } : undefined;
  }

  findByIdempotencyKey(key: string): Job | undefined {
    const row = this.#stmt("SELECT * FROM jobs WHERE idempotency_key = ?").get(key);
    return row ? toJob(row) : undefined;
  }

  /** Newest first, paged by ULID cursor; summaries only, whatever the size of the jobs. */
  list(filter: ListFilter): JobSummary[] {
    const where: string[] = [];
    const params: Params = { limit: filter.limit, metadata_limit: filter.metadataLimit };
    if (filter.state) {
      where.push("state = :state");
      params.state = filter.state;
    }
    if (filter.model) {
      where.push("model = :model");
      params.model = filter.model;
    }
    if (filter.before) {
      where.push("id < :before");
      params.before = filter.before;
    }
    const sql = `SELECT ${SUMMARY_COLUMNS} FROM jobs
      ${where.length ? "WHERE " + where.join(" AND ") : ""} ORDER BY id DESC LIMIT :limit`;
    return this.#stmt(sql).all(params).map(toSummary);
  }

  countByState(): Record<JobState, number> {
    const out = Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>;
    for (const row of this.#stmt("SELECT state, count(*) AS n FROM jobs GROUP BY state").all()) {
      out[row.state as JobState] = Number(row.n);
    }
    return out;
  }

  countQueued(): number {
    this.#queued ??= Number(
      this.#stmt("SELECT count(*) AS n FROM jobs WHERE state = 'queued'").get()!.n,
    );
    return this.#queued;
  }

  /**
   * When the oldest queued job was submitted (epoch ms), or null with none queued. Ids sort in
   * creation order, so this is one step down the queued-jobs index however deep the queue is; it
   * backs a gauge read on every scrape.
   */
  oldestQueuedAt(): number | null {
    const row = this.#stmt(
      "SELECT created_at FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1",
    ).get();
    return row ? Number(row.created_at) : null;
  }

  /** Jobs currently taken by the worker (at most one while foreman runs). */
  active(): Job[] {
    return this.#stmt(ACTIVE_JOBS).all().map(toJob);
  }

  /**
   * The next job by drain-by-model: a job older than `maxWait` first (when set), else the oldest
   * ready job for the resident model, else the oldest ready job overall.
   */
  next(resident: string | undefined, options: { maxWait?: number } = {}): Job | undefined {
    const now = this.#now();
    if (options.maxWait && options.maxWait > 0) {
      const row = this.#stmt(
        `SELECT * FROM jobs WHERE state = 'queued' AND not_before <= :now AND created_at <= :cutoff
         ORDER BY id LIMIT 1`,
      ).get({ now, cutoff: now - options.maxWait });
      if (row) return toJob(row);
    }
    if (resident) {
      const row = this.#stmt(
        `SELECT * FROM jobs WHERE state = 'queued' AND model = :model AND not_before <= :now
         ORDER BY id LIMIT 1`,
      ).get({ model: resident, now });
      if (row) return toJob(row);
    }
    const row = this.#stmt(
      "SELECT * FROM jobs WHERE state = 'queued' AND not_before <= :now ORDER BY id LIMIT 1",
    ).get({ now });
    return row ? toJob(row) : undefined;
  }

  /** When the earliest backed-off job becomes ready, if any queued job waits for time to pass. */
  nextReadyAt(): number | undefined {
    const row = this.#stmt("SELECT min(not_before) AS t FROM jobs WHERE state = 'queued'").get();
    return row?.t == null ? undefined : Number(row.t);
  }

  /**
   * 1-based place of a queued job in the order the worker will take jobs if nothing new arrives:
   * the resident model's jobs, then each other model's jobs grouped, groups by their oldest job.
   */
  position(job: JobSummary, resident: string | undefined): number | null {
    return this.positions([job], resident).get(job.id) ?? null;
  }

  /** position() for a whole page, in a constant number of queries (positions.ts). */
  positions(jobs: readonly JobSummary[], resident: string | undefined): Map<string, number> {
    return queuePositions(this.#db, jobs, { resident });
  }

  // ---- transitions -----------------------------------------------------------------------------

  /**
   * The one guarded state change. Moves job `ref` along transition `name` if it is in one of the
   * transition's source states, with the values that transition needs (transitions.ts), records
   * its event in the same transaction, and returns the job as it left it. Throws TransitionError
   * when the job is elsewhere. Inside a transaction already (tx, txFor), it joins it.
   */
  transition<N extends TransitionName>(name: N, ref: JobRef, ...args: ValuesArg<N>): MovedJob {
    const spec: TransitionSpec<TransitionValues[N]> = TRANSITIONS[name];
    const values = args[0] as TransitionValues[N];
    const id = typeof ref === "string" ? ref : ref.id;
    let kind = typeof ref === "string" ? undefined : ref.kind;
    // One source state and a known kind: the guarded UPDATE tells all, nothing is read first.
    // Otherwise the state (the event's previous one) and the kind (the commit's durability) are
    // read first; kind never changes, and the UPDATE checks the state again.
    let from = spec.from.length === 1 ? spec.from[0] : undefined;
    if (from === undefined || kind === undefined) {
      const before = this.#stmt("SELECT state, kind FROM jobs WHERE id = ?").get(id);
      const found = before?.state as JobState | undefined;
      if (!found || !spec.from.includes(found)) throw new TransitionError(id, spec.from, found);
      from = found;
      kind = before!.kind as JobKind;
    }
    const previous = from;
    return this.txFor([{ kind }], () => {
      const params: Params = { id, from: previous, now: this.#now() };
      spec.bind?.(values, params);
      const row = this.#stmt(UPDATE_SQL[name]).get(params);
      if (!row) throw new TransitionError(id, spec.from, this.get(id)?.state);
      if (this.#queued !== undefined) {
        this.#queued += (spec.to === "queued" ? 1 : 0) - (previous === "queued" ? 1 : 0);
      }
      // Only complete stores artifacts; its event carries the same ones, not read back.
      const artifacts = [...(spec.artifacts?.(values) ?? [])]
        .sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
      this.artifacts.add(id, artifacts);
      // Only complete writes a result, and nothing moves a job on from one.
      const job: MovedJob = { ...toSummary(row), result: spec.result?.(values) ?? null };
      this.#recordEvent(job, previous, artifacts);
      return job;
    });
  }

  /** Like transition, but returns undefined instead of throwing when the guard does not hold. */
  tryTransition<N extends TransitionName>(
    name: N,
    ref: JobRef,
    ...args: ValuesArg<N>
  ): MovedJob | undefined {
    try {
      return this.transition(name, ref, ...args);
    } catch (err) {
      if (err instanceof TransitionError) return undefined;
      throw err;
    }
  }

  /**
   * Start-up repair after a crash: sync jobs lost their callers and are cancelled; async jobs that
   * were loading or working go back to the queue, unless the interruption used their last attempt.
   */
  recover(maxAttempts: number): { requeued: string[]; cancelled: string[]; failed: string[] } {
    const out = { requeued: [] as string[], cancelled: [] as string[], failed: [] as string[] };
    const rows = this.#stmt(OPEN_SYNC_JOBS).all().map(toJob);
    for (const job of rows) {
      this.transition("cancel", job.id, { error: "caller went away: foreman restarted" });
      out.cancelled.push(job.id);
    }
    for (const job of this.active()) {
      if (job.attempt >= maxAttempts) {
        this.transition("fail", job.id, {
          error: `interrupted by a restart of foreman on attempt ${job.attempt} of ${maxAttempts}`,
        });
        out.failed.push(job.id);
      } else {
        this.transition("requeue", job.id, {
          error: "interrupted by a restart of foreman",
          notBefore: 0,
          refund: false,
        });
        out.requeued.push(job.id);
      }
    }
    return out;
  }

  // ---- events ----------------------------------------------------------------------------------

  /**
   * Appends the event reporting that `job` entered its state: to be sent when it has a webhook,
   * kept for watchers either way; listeners hear of it once the transaction commits.
   */
  #recordEvent(job: MovedJob, previous: JobState | null, artifacts: Artifact[] = []): void {
    const body = this.#renderEvent(job, { previous, artifacts });
    this.outbox.append({ jobId: job.id, jobState: job.state, url: job.webhookUrl, body });
    if (this.#eventListeners.length === 0) return;
    this.#db.afterCommit(() => {
      for (const listener of this.#eventListeners) listener(job.id);
    });
  }

  // ---- retention and bookkeeping ---------------------------------------------------------------

  /**
   * Deletes terminal jobs finished before `cutoff`, with their artifacts and events, once their
   * outbox is settled. A job with an event still pending stays, however old, until that event is
   * delivered or dead: deleting it would cascade to the event its receiver was promised.
   */
  prune(cutoff: number, batch = 500): number {
    return this.tx(() => {
      const r = this.#stmt(
        `DELETE FROM jobs WHERE id IN (SELECT j.id FROM jobs j
           WHERE j.finished_at IS NOT NULL AND j.finished_at < ?
             AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.job_id = j.id AND o.state = 'pending')
           LIMIT ?)`,
      ).run(cutoff, batch);
      return Number(r.changes);
    });
  }

  getMeta(key: string): string | undefined {
    const row = this.#stmt("SELECT value FROM meta WHERE key = ?").get(key);
    return row ? String(row.value) : undefined;
  }

  setMeta(key: string, value: string): void {
    // Through tx like every write: a statement outside one would commit at the connection's
    // resting level, which does not wait for the disk (Db.tx).
    this.tx(() =>
      this.#stmt(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      ).run(key, value)
    );
  }

  integrityCheck(): string {
    return String(this.db.prepare("PRAGMA integrity_check").get()!.integrity_check);
  }
}

function toSummary(r: Record<string, unknown>): JobSummary {
  return {
    id: String(r.id),
    kind: r.kind as JobKind,
    endpoint: r.endpoint as Endpoint,
    model: String(r.model),
    state: r.state as JobState,
    webhookUrl: nullableString(r.webhook_url),
    metadata: nullableString(r.metadata),
    idempotencyKey: nullableString(r.idempotency_key),
    requestHash: nullableString(r.request_hash),
    attempt: Number(r.attempt),
    notBefore: Number(r.not_before),
    error: nullableString(r.error),
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
    startedAt: r.started_at == null ? null : Number(r.started_at),
    finishedAt: r.finished_at == null ? null : Number(r.finished_at),
  };
}

function toJob(r: Record<string, unknown>): Job {
  return { ...toSummary(r), request: String(r.request), result: nullableString(r.result) };
}

function nullableString(v: unknown): string | null {
  return v == null ? null : String(v);
}
