// The durable queue: every SQL statement foreman runs lives in this file. Jobs change state only
// through `transition`, which guards on the state it expects and, in the same transaction, writes
// the webhook outbox row that reports the change, so an event can be neither lost nor invented.

import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import { monotonicFactory } from "ulid";
import { migrate } from "./schema.ts";
import type { Endpoint, JobKind, JobState } from "./states.ts";

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

export interface Job extends JobSummary {
  /** The request body as JSON text, exactly what the target will be sent (before keep_alive). */
  request: string;
  /** JSON text of the target's final response. */
  result: string | null;
}

export interface ArtifactMeta {
  name: string;
  contentType: string;
  size: number;
  sha256: string;
}

export interface Artifact extends ArtifactMeta {
  body: Uint8Array<ArrayBuffer>;
}

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

export interface OutboxEvent {
  seq: number;
  id: string;
  jobId: string;
  url: string;
  body: string;
  attempts: number;
  createdAt: number;
}

export interface WebhookSummary {
  url: string;
  pending: number;
  delivered: number;
  dead: number;
  lastError: string | null;
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

/** Renders the body of the webhook event that reports `job` entering its current state. */
export type EventRenderer = (
  job: Job,
  previous: JobState | null,
  artifacts: Artifact[],
) => string;

export interface StoreOptions {
  /** Clock in epoch milliseconds; tests pass a fake one. */
  now?: () => number;
  /** Renders webhook bodies; without it jobs with a webhook URL cannot be stored. */
  renderEvent?: EventRenderer;
  /** Told whenever a webhook event is written (called inside the transaction; must not block). */
  onEvent?: () => void;
  /**
   * SQLite's `synchronous` pragma. FULL (the default) makes every accepted job survive a power
   * loss; NORMAL survives a crash of foreman but may lose the last commits if the machine dies.
   */
  synchronous?: "FULL" | "NORMAL";
}

/** Raised when a guarded transition finds the job in another state than it expects. */
export class TransitionError extends Error {
  override name = "TransitionError";
  constructor(
    readonly jobId: string,
    readonly from: readonly JobState[],
    readonly found?: JobState,
  ) {
    super(
      found
        ? `Cannot move job ${jobId} from ${found}: expected ${from.join(" or ")}`
        : `Cannot move job ${jobId}: no such job`,
    );
  }
}

interface TransitionSpec {
  from: readonly JobState[];
  to: JobState;
  /** Extra assignments; named parameters come from the call's `values`. */
  set: string;
}

/** The named transitions. Nothing else in foreman writes `jobs.state`. */
const TRANSITIONS = {
  /** The worker takes the job: counts an attempt. */
  claim: {
    from: ["queued"],
    to: "loading",
    set: "attempt = attempt + 1, started_at = coalesce(started_at, :now), error = NULL",
  },
  /** The model is resident; inference starts. */
  startWorking: { from: ["loading"], to: "working", set: "" },
  /** The target answered in full. */
  complete: { from: ["working"], to: "done", set: "result = :result, finished_at = :now" },
  /** Attempts ran out or the target refused the request for good. */
  fail: {
    from: ["queued", "loading", "working"],
    to: "failed",
    set: "error = :error, finished_at = :now",
  },
  /** Back to the queue: the target was unreachable (attempt refunded) or answered a retryable error. */
  requeue: {
    from: ["loading", "working"],
    to: "queued",
    set: "error = :error, not_before = :not_before, attempt = attempt - :refund",
  },
  /** The caller gave up, or the job outlived its sync caller. */
  cancel: {
    from: ["queued", "loading", "working"],
    to: "cancelled",
    set: "error = :error, finished_at = :now",
  },
} as const satisfies Record<string, TransitionSpec>;

export type TransitionName = keyof typeof TRANSITIONS;

type Params = Record<string, SQLInputValue>;

export class Store {
  readonly db: DatabaseSync;
  readonly #now: () => number;
  readonly #renderEvent?: EventRenderer;
  readonly #onEvent?: () => void;
  readonly #ulid = monotonicFactory();
  readonly #stmts = new Map<string, StatementSync>();
  readonly #synchronous: "FULL" | "NORMAL";
  /**
   * Queued jobs, kept in step by every write that changes the number, so the submit path's queue
   * limit check does not count a deep queue each time; undefined means "count again".
   */
  #queued: number | undefined;

  constructor(path: string, options: StoreOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#renderEvent = options.renderEvent;
    this.#onEvent = options.onEvent;
    this.db = new DatabaseSync(path, { enableForeignKeyConstraints: true });
    this.db.exec("PRAGMA journal_mode = WAL");
    this.#synchronous = options.synchronous ?? "FULL";
    this.db.exec(`PRAGMA synchronous = ${this.#synchronous}`);
    this.db.exec("PRAGMA busy_timeout = 5000");
    migrate(this.db);
  }

  close(): void {
    if (this.db.isOpen) this.db.close();
  }

  /** A new ULID, monotonic within this process so ids sort in creation order. */
  newId(): string {
    return this.#ulid(this.#now());
  }

  /**
   * Runs `fn` in one IMMEDIATE transaction; rolls back when it throws. With `durable: false` the
   * commit does not wait for the disk (synchronous=NORMAL for this transaction only): it survives a
   * crash of foreman, and reaches the disk with the next durable commit or checkpoint (ADR-0015).
   */
  tx<T>(fn: () => T, options: { durable?: boolean } = {}): T {
    if (this.db.isTransaction) return fn();
    // SQLite refuses to change the safety level inside a transaction, so it is set around it.
    const relaxed = options.durable === false && this.#synchronous === "FULL";
    // Prepared once and reused: exec() would parse these statements on every transaction.
    if (relaxed) this.#stmt("PRAGMA synchronous = NORMAL").run();
    try {
      this.#stmt("BEGIN IMMEDIATE").run();
      try {
        const out = fn();
        this.#stmt("COMMIT").run();
        return out;
      } catch (err) {
        if (this.db.isTransaction) this.db.exec("ROLLBACK");
        this.#queued = undefined; // the rolled-back writes may have moved it
        throw err;
      }
    } finally {
      if (relaxed) this.#stmt("PRAGMA synchronous = FULL").run();
    }
  }

  #stmt(sql: string): StatementSync {
    let st = this.#stmts.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.#stmts.set(sql, st);
    }
    return st;
  }

  // ---- jobs ------------------------------------------------------------------------------------

  /** Stores a new queued job (and its `queued` event when it has a webhook). */
  insertJob(input: NewJob): Job {
    return this.tx(() => this.#insert(input), { durable: input.kind !== "sync" });
  }

  /**
   * Stores several new jobs in one transaction (group commit, ADR-0015): one fsync for all of them.
   * All or none are stored.
   */
  insertJobs(inputs: readonly NewJob[]): Job[] {
    return this.tx(() => inputs.map((input) => this.#insert(input)), {
      durable: inputs.some((input) => input.kind !== "sync"),
    });
  }

  #insert(input: NewJob): Job {
    const now = this.#now();
    const id = this.newId();
    const row = this.#stmt(
      `INSERT INTO jobs (id, kind, endpoint, model, state, request, webhook_url, metadata,
         idempotency_key, request_hash, created_at, updated_at)
       VALUES (:id, :kind, :endpoint, :model, 'queued', :request, :webhook_url, :metadata,
         :idempotency_key, :request_hash, :now, :now) RETURNING *`,
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
    const job = toJob(row!);
    this.#recordEvent(job, null);
    return job;
  }

  get(id: string): Job | undefined {
    const row = this.#stmt("SELECT * FROM jobs WHERE id = ?").get(id);
    return row ? toJob(row) : undefined;
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
    const out = { queued: 0, loading: 0, working: 0, done: 0, failed: 0, cancelled: 0 };
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
    return this.#stmt("SELECT * FROM jobs WHERE state IN ('loading', 'working')").all().map(toJob);
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

  /**
   * position() for a whole page in three queries over the queued-by-model index, whatever its
   * length: each model's group, the page models' jobs older than the page, and a window numbering
   * the jobs within the page's id range. One job costs what counting the jobs ahead of it costs.
   */
  positions(jobs: readonly JobSummary[], resident: string | undefined): Map<string, number> {
    const out = new Map<string, number>();
    const queued = jobs.filter((j) => j.state === "queued");
    if (queued.length === 0) return out;
    const ids = queued.map((j) => j.id).sort();
    const models = JSON.stringify([...new Set(queued.map((j) => j.model))]);
    const range = { first: ids[0], last: ids[ids.length - 1] };
    const groups = new Map<string, { n: number; first: string }>();
    for (
      const g of this.#stmt(
        "SELECT model, count(*) AS n, min(id) AS first FROM jobs WHERE state = 'queued' GROUP BY model",
      ).all()
    ) groups.set(String(g.model), { n: Number(g.n), first: String(g.first) });
    const older = new Map(
      this.#stmt(
        `SELECT model, count(*) AS n FROM jobs WHERE state = 'queued'
           AND model IN (SELECT value FROM json_each(:models)) AND id < :first GROUP BY model`,
      ).all({ models, first: range.first }).map((r) => [String(r.model), Number(r.n)]),
    );
    const within = this.#stmt(
      `SELECT id, n FROM (
         SELECT id, row_number() OVER (PARTITION BY model ORDER BY id) AS n FROM jobs
         WHERE state = 'queued' AND model IN (SELECT value FROM json_each(:models))
           AND id BETWEEN :first AND :last)
       WHERE id IN (SELECT value FROM json_each(:ids))`,
    ).all({ models, ids: JSON.stringify(ids), ...range });
    const rank = new Map(within.map((r) => [String(r.id), Number(r.n)]));
    const ahead = new Map<string, number>();
    for (const job of queued) {
      const own = groups.get(job.model);
      const n = rank.get(job.id);
      if (!own || n === undefined) continue; // taken by the worker since the page was read
      if (!ahead.has(job.model)) {
        let before = older.get(job.model) ?? 0;
        for (const [model, g] of groups) {
          if (model === job.model) continue;
          if (model === resident || (job.model !== resident && g.first < own.first)) before += g.n;
        }
        ahead.set(job.model, before);
      }
      out.set(job.id, ahead.get(job.model)! + n);
    }
    return out;
  }

  // ---- transitions -----------------------------------------------------------------------------

  /**
   * The one guarded state change. Moves job `id` along transition `name` if it is in one of the
   * transition's source states, records its webhook event in the same transaction, and returns the
   * updated job. Throws TransitionError when the job is elsewhere.
   */
  transition(
    name: TransitionName,
    id: string,
    values: { error?: string | null; result?: string; notBefore?: number; refund?: boolean } = {},
    artifacts: Artifact[] = [],
  ): Job {
    const spec: TransitionSpec = TRANSITIONS[name];
    // Kind never changes and state is re-checked by the guarded UPDATE, so both can be read first.
    const before = this.#stmt("SELECT state, kind FROM jobs WHERE id = ?").get(id);
    const found = before?.state as JobState | undefined;
    if (!found || !spec.from.includes(found)) throw new TransitionError(id, spec.from, found);
    return this.tx(() => {
      const params: Params = { id, from: found, now: this.#now() };
      if (spec.set.includes(":error")) params.error = values.error ?? null;
      if (spec.set.includes(":result")) params.result = values.result ?? null;
      if (spec.set.includes(":not_before")) params.not_before = values.notBefore ?? 0;
      if (spec.set.includes(":refund")) params.refund = values.refund ? 1 : 0;
      const set = spec.set ? `, ${spec.set}` : "";
      const row = this.#stmt(
        `UPDATE jobs SET state = '${spec.to}', updated_at = :now${set}
         WHERE id = :id AND state = :from RETURNING *`,
      ).get(params);
      if (!row) throw new TransitionError(id, spec.from, this.get(id)?.state);
      if (this.#queued !== undefined) {
        this.#queued += (spec.to === "queued" ? 1 : 0) - (found === "queued" ? 1 : 0);
      }
      for (const a of artifacts) {
        this.#stmt(
          `INSERT INTO artifacts (job_id, name, content_type, size, sha256, body)
           VALUES (?, ?, ?, ?, ?, ?)`,
        ).run(id, a.name, a.contentType, a.size, a.sha256, a.body);
      }
      const job = toJob(row);
      this.#recordEvent(job, found);
      return job;
    }, { durable: before!.kind !== "sync" });
  }

  /** Like transition, but returns undefined instead of throwing when the guard does not hold. */
  tryTransition(
    name: TransitionName,
    id: string,
    values: Parameters<Store["transition"]>[2] = {},
  ): Job | undefined {
    try {
      return this.transition(name, id, values);
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
    const rows = this.#stmt(
      "SELECT * FROM jobs WHERE state IN ('queued', 'loading', 'working') AND kind = 'sync'",
    ).all().map(toJob);
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
        this.transition("requeue", job.id, { error: "interrupted by a restart of foreman" });
        out.requeued.push(job.id);
      }
    }
    return out;
  }

  // ---- artifacts -------------------------------------------------------------------------------

  artifacts(jobId: string): ArtifactMeta[] {
    return this.artifactsOf([jobId]).get(jobId) ?? [];
  }

  /** The descriptors (never the bytes) of the artifacts of several jobs, in one query. */
  artifactsOf(jobIds: readonly string[]): Map<string, ArtifactMeta[]> {
    const out = new Map<string, ArtifactMeta[]>();
    if (jobIds.length === 0) return out;
    const rows = this.#stmt(
      `SELECT job_id, name, content_type, size, sha256 FROM artifacts
       WHERE job_id IN (SELECT value FROM json_each(?)) ORDER BY job_id, name`,
    ).all(JSON.stringify(jobIds));
    for (const r of rows) {
      const list = out.get(String(r.job_id)) ?? [];
      list.push({
        name: String(r.name),
        contentType: String(r.content_type),
        size: Number(r.size),
        sha256: String(r.sha256),
      });
      out.set(String(r.job_id), list);
    }
    return out;
  }

  artifactsWithBodies(jobId: string): Artifact[] {
    return this.#stmt(
      "SELECT name, content_type, size, sha256, body FROM artifacts WHERE job_id = ? ORDER BY name",
    ).all(jobId).map(toArtifact);
  }

  artifact(jobId: string, name: string): Artifact | undefined {
    const r = this.#stmt(
      "SELECT name, content_type, size, sha256, body FROM artifacts WHERE job_id = ? AND name = ?",
    ).get(jobId, name);
    return r ? toArtifact(r) : undefined;
  }

  // ---- webhook outbox --------------------------------------------------------------------------

  #recordEvent(job: Job, previous: JobState | null): void {
    if (!job.webhookUrl) return;
    if (!this.#renderEvent) throw new TypeError("Store has no event renderer for webhook jobs");
    const body = this.#renderEvent(job, previous, this.artifactsWithBodies(job.id));
    const now = this.#now();
    const prior = this.#stmt(
      `SELECT max(last_status = 410) AS gone, max(state = 'pending') AS waiting
       FROM outbox WHERE job_id = ?`,
    ).get(job.id)!;
    // A receiver that answered 410 Gone for this job hears nothing more about it: later events
    // are written dead, as markJobEventsDead did to the ones pending at the time.
    const gone = prior.gone === 1;
    // Behind an undelivered event of the same job it cannot be sent, whatever its time says.
    const held = !gone && prior.waiting === 1;
    this.#stmt(
      `INSERT INTO outbox (id, job_id, url, body, state, next_attempt_at, created_at, last_error,
         held)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      `msg_${this.newId()}`,
      job.id,
      job.webhookUrl,
      body,
      gone ? "dead" : "pending",
      now,
      now,
      gone ? "receiver answered 410 Gone" : null,
      held ? 1 : 0,
    );
    // A held event becomes sendable when its predecessor settles, which wakes the dispatcher.
    if (!gone && !held) this.#onEvent?.();
  }

  /**
   * Pending events that are due and have no undelivered predecessor for the same job (the rows
   * not `held`), oldest due first, leaving out `exclude` (the events in flight).
   */
  dueEvents(limit: number, exclude: ReadonlySet<string> = new Set()): OutboxEvent[] {
    const rows = this.#stmt(
      `SELECT seq, id, job_id, url, body, attempts, created_at FROM outbox
       WHERE state = 'pending' AND held = 0 AND next_attempt_at <= :now
       ORDER BY next_attempt_at, seq LIMIT :limit`,
    ).all({ now: this.#now(), limit: limit + exclude.size });
    return rows.map((r) => ({
      seq: Number(r.seq),
      id: String(r.id),
      jobId: String(r.job_id),
      url: String(r.url),
      body: String(r.body),
      attempts: Number(r.attempts),
      createdAt: Number(r.created_at),
    })).filter((e) => !exclude.has(e.id)).slice(0, limit);
  }

  /**
   * When the next event that can be sent falls due, if any: only the first pending event of each
   * job counts (later ones wait for it however old they are), and none of `inFlight`, whose next
   * time is only known once its outcome is recorded.
   */
  nextEventAt(inFlight: ReadonlySet<string> = new Set()): number | undefined {
    const rows = this.#stmt(
      `SELECT id, next_attempt_at FROM outbox WHERE state = 'pending' AND held = 0
       ORDER BY next_attempt_at, seq LIMIT :limit`,
    ).all({ limit: inFlight.size + 1 });
    const next = rows.find((r) => !inFlight.has(String(r.id)));
    return next === undefined ? undefined : Number(next.next_attempt_at);
  }

  /** Event `id` settled (delivered or dead): the next pending event of its job may be sent. */
  #releaseNext(id: string): void {
    this.#stmt(
      `UPDATE outbox SET held = 0 WHERE held = 1 AND seq = (
         SELECT min(seq) FROM outbox WHERE state = 'pending'
           AND job_id = (SELECT job_id FROM outbox WHERE id = ?))`,
    ).run(id);
  }

  // Delivery bookkeeping commits without waiting for the disk (ADR-0015): losing one of these
  // commits to a power cut only sends an event again, which at-least-once delivery allows.

  markDelivered(id: string, status: number): void {
    this.tx(() => {
      this.#stmt(
        `UPDATE outbox SET state = 'delivered', attempts = attempts + 1, last_status = ?,
           last_error = NULL, delivered_at = ? WHERE id = ? AND state = 'pending'`,
      ).run(status, this.#now(), id);
      this.#releaseNext(id);
    }, { durable: false });
  }

  markRetry(id: string, outcome: { status: number | null; error: string; nextAt: number }): void {
    this.tx(() =>
      this.#stmt(
        `UPDATE outbox SET attempts = attempts + 1, last_status = ?, last_error = ?,
           next_attempt_at = ? WHERE id = ? AND state = 'pending'`,
      ).run(outcome.status, outcome.error, outcome.nextAt, id), { durable: false });
  }

  markDead(id: string, outcome: { status: number | null; error: string }): void {
    this.tx(() => {
      this.#stmt(
        `UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_status = ?, last_error = ?
         WHERE id = ? AND state = 'pending'`,
      ).run(outcome.status, outcome.error, id);
      this.#releaseNext(id);
    }, { durable: false });
  }

  /** The receiver said 410 Gone: nothing more is sent for this job. */
  markJobEventsDead(jobId: string, error: string): void {
    this.tx(() =>
      this.#stmt(
        "UPDATE outbox SET state = 'dead', last_error = ? WHERE job_id = ? AND state = 'pending'",
      ).run(error, jobId), { durable: false });
  }

  webhookSummary(jobId: string): WebhookSummary | null {
    return this.webhookSummaries([jobId]).get(jobId) ?? null;
  }

  /** webhookSummary() for several jobs in one query; jobs without events are absent. */
  webhookSummaries(jobIds: readonly string[]): Map<string, WebhookSummary> {
    const out = new Map<string, WebhookSummary>();
    if (jobIds.length === 0) return out;
    const rows = this.#stmt(
      `SELECT job_id, max(url) AS url,
         sum(state = 'pending') AS pending, sum(state = 'delivered') AS delivered,
         sum(state = 'dead') AS dead,
         (SELECT last_error FROM outbox e WHERE e.job_id = o.job_id AND last_error IS NOT NULL
            ORDER BY seq DESC LIMIT 1) AS last_error
       FROM outbox o WHERE job_id IN (SELECT value FROM json_each(?)) GROUP BY job_id`,
    ).all(JSON.stringify(jobIds));
    for (const row of rows) {
      out.set(String(row.job_id), {
        url: String(row.url),
        pending: Number(row.pending),
        delivered: Number(row.delivered),
        dead: Number(row.dead),
        lastError: row.last_error == null ? null : String(row.last_error),
      });
    }
    return out;
  }

  countEventsByState(): { pending: number; delivered: number; dead: number } {
    const out = { pending: 0, delivered: 0, dead: 0 };
    for (const r of this.#stmt("SELECT state, count(*) AS n FROM outbox GROUP BY state").all()) {
      out[r.state as keyof typeof out] = Number(r.n);
    }
    return out;
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
    this.#stmt(
      "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    ).run(key, value);
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

function toArtifact(r: Record<string, unknown>): Artifact {
  return {
    name: String(r.name),
    contentType: String(r.content_type),
    size: Number(r.size),
    sha256: String(r.sha256),
    body: r.body as Uint8Array<ArrayBuffer>,
  };
}

function nullableString(v: unknown): string | null {
  return v == null ? null : String(v);
}
