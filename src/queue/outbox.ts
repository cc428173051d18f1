// The outbox: one row per job change of every job, written by the store in the transaction of the
// change it reports. Watchers read a job's rows in order (ADR-0017); the dispatcher sends and
// settles the rows of jobs with a webhook, in order: each waits (`held`) until the one before it is
// delivered or dead. The other rows are `local` and never change. See EventState in states.ts.

import type { Db } from "./db.ts";
import { DELIVERY_STATES, type DeliveryState, type EventState, type JobState } from "./states.ts";

export interface OutboxEvent {
  seq: number;
  id: string;
  jobId: string;
  url: string;
  body: string;
  attempts: number;
  createdAt: number;
}

/** A job's event as watchers read it: its place in the outbox, its id and the state it reports. */
export interface JobEvent {
  seq: number;
  id: string;
  /** The state the job entered. */
  state: JobState;
  /** The webhook event JSON, on one line. */
  body: string;
}

export interface WebhookSummary {
  url: string;
  pending: number;
  delivered: number;
  dead: number;
  lastError: string | null;
}

/** What a failed delivery attempt found: the receiver's status, if it answered, and why. */
export interface AttemptOutcome {
  status: number | null;
  error: string;
}

export interface OutboxOptions {
  /** Clock in epoch milliseconds. */
  now: () => number;
  /** A new unique, time-ordered id. */
  newId: () => string;
}

export class Outbox {
  readonly #db: Db;
  readonly #now: () => number;
  readonly #newId: () => string;
  readonly #listeners: (() => void)[] = [];

  constructor(db: Db, options: OutboxOptions) {
    this.#db = db;
    this.#now = options.now;
    this.#newId = options.newId;
  }

  /**
   * Calls `listener` whenever an event that can be sent at once is written. It runs inside the
   * writing transaction, so it must only schedule work (the dispatcher's wake reads the outbox
   * after the commit).
   */
  onSendable(listener: () => void): void {
    this.#listeners.push(listener);
  }

  /**
   * Writes the event reporting that job `jobId` entered `jobState`, to be sent to `url`, or kept
   * for watchers only (`local`) when the job has no webhook. The store calls it inside the
   * transaction of that change, so an event is never lost or invented.
   */
  append(event: { jobId: string; jobState: JobState; url: string | null; body: string }): void {
    const now = this.#now();
    const id = `msg_${this.#newId()}`;
    if (event.url === null) {
      // Nothing to deliver: one INSERT, no look at the job's earlier events.
      this.#db.stmt(
        `INSERT INTO outbox (id, job_id, job_state, url, state, next_attempt_at, created_at, body)
         VALUES (?, ?, ?, NULL, 'local', NULL, ?, ?)`,
      ).run(id, event.jobId, event.jobState, now, event.body);
      return;
    }
    const prior = this.#db.stmt(
      `SELECT max(last_status = 410) AS gone, max(state = 'pending') AS waiting
       FROM outbox WHERE job_id = ?`,
    ).get(event.jobId)!;
    // A receiver that answered 410 Gone for this job hears nothing more about it: later events
    // are written dead, as markJobEventsDead did to the ones pending at the time.
    const gone = prior.gone === 1;
    // Behind an undelivered event of the same job it cannot be sent, whatever its time says.
    const held = !gone && prior.waiting === 1;
    const state: EventState = gone ? "dead" : "pending";
    this.#db.stmt(
      `INSERT INTO outbox (id, job_id, job_state, url, state, next_attempt_at, created_at,
         last_error, held, body)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      id,
      event.jobId,
      event.jobState,
      event.url,
      state,
      now,
      now,
      gone ? "receiver answered 410 Gone" : null,
      held ? 1 : 0,
      event.body,
    );
    // A held event becomes sendable when its predecessor settles, which wakes the dispatcher.
    if (!gone && !held) { for (const listener of this.#listeners) listener(); }
  }

  /**
   * The events of job `jobId` written after the one at `seq` (0: from the first), oldest first:
   * one step down the job's index, for a watcher catching up.
   */
  eventsAfter(jobId: string, seq: number): JobEvent[] {
    return this.#db.stmt(
      `SELECT seq, id, job_state, body FROM outbox WHERE job_id = ? AND seq > ? ORDER BY seq`,
    ).all(jobId, seq).map(toJobEvent);
  }

  /**
   * The next page of job `jobId`'s events after the one at `seq`, oldest first: as many as fit in
   * `bytes` (at least one, however large), at most 512. `more` says whether events follow it. The
   * sizes are read before any body, so a page costs its own bytes, whatever the job's backlog.
   */
  eventPage(jobId: string, seq: number, bytes: number): { events: JobEvent[]; more: boolean } {
    const sizes = this.#db.stmt(
      `SELECT seq, octet_length(body) AS n FROM outbox WHERE job_id = ? AND seq > ?
       ORDER BY seq LIMIT 513`,
    ).all(jobId, seq);
    let last = seq;
    let total = 0;
    let count = 0;
    for (const r of sizes) {
      const n = Number(r.n);
      if (count === 512 || (count > 0 && total + n > bytes)) break;
      total += n;
      count++;
      last = Number(r.seq);
    }
    const events = count === 0 ? [] : this.#db.stmt(
      `SELECT seq, id, job_state, body FROM outbox WHERE job_id = ? AND seq > ? AND seq <= ?
       ORDER BY seq`,
    ).all(jobId, seq, last).map(toJobEvent);
    return { events, more: count < sizes.length };
  }

  /** The last event of job `jobId`: the change that put it in its current state. */
  latestEvent(jobId: string): JobEvent | undefined {
    const row = this.#db.stmt(
      "SELECT seq, id, job_state, body FROM outbox WHERE job_id = ? ORDER BY seq DESC LIMIT 1",
    ).get(jobId);
    return row ? toJobEvent(row) : undefined;
  }

  /** Where event `id` sits in the outbox, if it is an event of job `jobId`. */
  eventSeq(jobId: string, id: string): number | undefined {
    const row = this.#db.stmt("SELECT seq FROM outbox WHERE id = ? AND job_id = ?").get(id, jobId);
    return row ? Number(row.seq) : undefined;
  }

  /**
   * Pending events that are due and have no undelivered predecessor for the same job (the rows
   * not `held`), oldest due first, leaving out `exclude` (the events in flight).
   */
  due(limit: number, exclude: ReadonlySet<string> = new Set()): OutboxEvent[] {
    const rows = this.#db.stmt(
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
  nextDueAt(inFlight: ReadonlySet<string> = new Set()): number | undefined {
    const rows = this.#db.stmt(
      `SELECT id, next_attempt_at FROM outbox WHERE state = 'pending' AND held = 0
       ORDER BY next_attempt_at, seq LIMIT :limit`,
    ).all({ limit: inFlight.size + 1 });
    const next = rows.find((r) => !inFlight.has(String(r.id)));
    return next === undefined ? undefined : Number(next.next_attempt_at);
  }

  // Settling an event commits without waiting for the disk (ADR-0015): losing one of these commits
  // to a power cut only sends an event again, which at-least-once delivery allows. Each returns
  // whether the event was still pending: false means another writer settled it first (a 410 for
  // its job) or it is gone, and nothing was changed.

  /** The receiver took event `id` (a 2xx `status`): delivered, and its job's next may go. */
  markDelivered(id: string, status: number): boolean {
    return this.#db.tx(() => {
      const changed = this.#db.stmt(
        `UPDATE outbox SET state = 'delivered', attempts = attempts + 1, last_status = ?,
           last_error = NULL, delivered_at = ? WHERE id = ? AND state = 'pending'`,
      ).run(status, this.#now(), id).changes > 0;
      if (changed) this.#releaseNext(id);
      return changed;
    }, { durable: false });
  }

  /** An attempt failed and another is due at `nextAt`; the event stays pending. */
  markRetry(id: string, outcome: AttemptOutcome & { nextAt: number }): boolean {
    return this.#db.tx(() =>
      this.#db.stmt(
        `UPDATE outbox SET attempts = attempts + 1, last_status = ?, last_error = ?,
           next_attempt_at = ? WHERE id = ? AND state = 'pending'`,
      ).run(outcome.status, outcome.error, outcome.nextAt, id).changes > 0, { durable: false });
  }

  /** An attempt failed and none is left: dead, and its job's next may go. */
  markDead(id: string, outcome: AttemptOutcome): boolean {
    return this.#db.tx(() => {
      const changed = this.#db.stmt(
        `UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_status = ?, last_error = ?
         WHERE id = ? AND state = 'pending'`,
      ).run(outcome.status, outcome.error, id).changes > 0;
      if (changed) this.#releaseNext(id);
      return changed;
    }, { durable: false });
  }

  /** The receiver said 410 Gone: every pending event of the job is dead. Returns how many. */
  markJobEventsDead(jobId: string, error: string): number {
    return this.#db.tx(() =>
      Number(
        this.#db.stmt(
          "UPDATE outbox SET state = 'dead', last_error = ? WHERE job_id = ? AND state = 'pending'",
        ).run(error, jobId).changes,
      ), { durable: false });
  }

  /** Event `id` settled (delivered or dead): the next pending event of its job may be sent. */
  #releaseNext(id: string): void {
    this.#db.stmt(
      `UPDATE outbox SET held = 0 WHERE held = 1 AND seq = (
         SELECT min(seq) FROM outbox WHERE state = 'pending'
           AND job_id = (SELECT job_id FROM outbox WHERE id = ?))`,
    ).run(id);
  }

  summary(jobId: string): WebhookSummary | null {
    return this.summaries([jobId]).get(jobId) ?? null;
  }

  /** summary() for several jobs in one query; jobs without a webhook are absent. */
  summaries(jobIds: readonly string[]): Map<string, WebhookSummary> {
    const out = new Map<string, WebhookSummary>();
    if (jobIds.length === 0) return out;
    const rows = this.#db.stmt(
      `SELECT job_id, max(url) AS url,
         sum(state = 'pending') AS pending, sum(state = 'delivered') AS delivered,
         sum(state = 'dead') AS dead,
         (SELECT last_error FROM outbox e WHERE e.job_id = o.job_id AND last_error IS NOT NULL
            ORDER BY seq DESC LIMIT 1) AS last_error
       FROM outbox o WHERE job_id IN (SELECT value FROM json_each(?)) AND url IS NOT NULL
       GROUP BY job_id`,
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

  /** Events with a receiver, by state (local events are nobody's delivery). */
  countByState(): Record<DeliveryState, number> {
    const out = Object.fromEntries(DELIVERY_STATES.map((s) => [s, 0])) as Record<
      DeliveryState,
      number
    >;
    const rows = this.#db.stmt(
      "SELECT state, count(*) AS n FROM outbox WHERE url IS NOT NULL GROUP BY state",
    ).all();
    for (const r of rows) out[r.state as DeliveryState] = Number(r.n);
    return out;
  }
}

function toJobEvent(r: Record<string, unknown>): JobEvent {
  return {
    seq: Number(r.seq),
    id: String(r.id),
    state: r.job_state as JobState,
    body: String(r.body),
  };
}
