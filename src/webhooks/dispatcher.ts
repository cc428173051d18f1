// Delivers webhook events from the outbox: at least once, in order per job while the receiver is
// healthy, with exponential backoff and full jitter, Retry-After honoured, 410 ending a job's
// deliveries and a bounded number of attempts before an event is dead. It never touches jobs, so
// a slow or broken receiver cannot hold up the queue.

import { WakeableSleep } from "../async.ts";
import { errorMessage, type Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { Outbox, OutboxEvent } from "../queue/outbox.ts";
import { secretKey, signatureHeaders } from "./signing.ts";

export interface DispatcherOptions {
  outbox: Outbox;
  log: Logger;
  metrics: Metrics;
  secret: string;
  maxAttempts: number;
  retryBase: number;
  timeout: number;
  /** Deliveries in flight at once (different jobs). */
  concurrency?: number;
  now?: () => number;
  random?: () => number;
  fetch?: typeof fetch;
}

const RETRY_CAP = 10 * 60_000;
/** Pause after an outcome could not be written (a full disk) before sending anything again. */
const STORE_RETRY = 1000;
const RETRY_AFTER_CAP = 60 * 60_000;
/** Longest sleep with nothing due: a safety net, since new events and finished deliveries wake it. */
const IDLE_WAIT = 30_000;

export type DeliveryOutcome = "delivered" | "retry" | "dead";

export class Dispatcher {
  readonly #o: DispatcherOptions;
  readonly #key?: Uint8Array;
  readonly #now: () => number;
  /** Deliveries under way, by event id. */
  readonly #inFlight = new Map<string, { jobId: string; done: Promise<DeliveryOutcome> }>();
  readonly #idle = new WakeableSleep();
  #pausedUntil = 0;

  constructor(options: DispatcherOptions) {
    this.#o = options;
    this.#key = options.secret ? secretKey(options.secret) : undefined;
    this.#now = options.now ?? Date.now;
  }

  /** New events were written: deliver them now rather than at the next tick. */
  wake(): void {
    this.#idle.wake();
  }

  /** Starts deliveries for every due event (up to the concurrency) and returns what it started. */
  runOnce(): Promise<DeliveryOutcome>[] {
    const room = (this.#o.concurrency ?? 8) - this.#inFlight.size;
    if (room <= 0 || this.#now() < this.#pausedUntil) return [];
    const due = this.#o.outbox.due(room, new Set(this.#inFlight.keys()));
    // One event per job at a time keeps each job's events in order. The store already holds back
    // every event behind an undelivered one; this guards the order should that ever slip.
    const busyJobs = new Set([...this.#inFlight.values()].map((d) => d.jobId));
    const started: Promise<DeliveryOutcome>[] = [];
    for (const event of due) {
      if (busyJobs.has(event.jobId)) continue;
      busyJobs.add(event.jobId);
      const p = this.deliver(event).catch((err): DeliveryOutcome => {
        // The outcome could not be recorded: the event stays pending and is sent again (at
        // least once), after a pause so a full disk does not turn into a tight resend loop.
        this.#o.log.error("cannot record a webhook delivery, retrying", {
          job_id: event.jobId,
          event_id: event.id,
          error: errorMessage(err),
        });
        this.#pausedUntil = this.#now() + STORE_RETRY;
        return "retry";
      }).finally(() => {
        this.#inFlight.delete(event.id);
        this.wake();
      });
      this.#inFlight.set(event.id, { jobId: event.jobId, done: p });
      started.push(p);
    }
    return started;
  }

  /** Waits for every delivery in flight (shutdown, tests). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.#inFlight.values()].map((d) => d.done));
  }

  async start(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      this.runOnce();
      await this.#idle.sleep(this.#idleFor(), signal);
    }
    await this.drain();
  }

  /**
   * How long the loop may sleep: until the next event that can be sent falls due. Deliveries in
   * flight, and events held behind them, are not counted: each finished delivery wakes the loop.
   */
  #idleFor(): number {
    const full = this.#inFlight.size >= (this.#o.concurrency ?? 8);
    const next = full ? undefined : this.#o.outbox.nextDueAt(new Set(this.#inFlight.keys()));
    if (next === undefined) return IDLE_WAIT;
    return Math.min(IDLE_WAIT, Math.max(10, Math.max(next, this.#pausedUntil) - this.#now()));
  }

  /** One delivery attempt of `event`; records the outcome in the outbox. */
  async deliver(event: OutboxEvent): Promise<DeliveryOutcome> {
    const { outbox, log, metrics, timeout } = this.#o;
    const timestamp = Math.floor(this.#now() / 1000);
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "user-agent": "foreman-webhooks",
      "webhook-id": event.id,
      "webhook-timestamp": String(timestamp),
    };
    if (this.#key) {
      Object.assign(
        headers,
        signatureHeaders(this.#key, { id: event.id, timestamp, body: event.body }),
      );
    }
    let status: number | null = null;
    let retryAfter: number | undefined;
    let error: string;
    try {
      const res = await (this.#o.fetch ?? fetch)(event.url, {
        method: "POST",
        headers,
        body: event.body,
        redirect: "manual",
        signal: AbortSignal.timeout(timeout),
      });
      status = res.status;
      retryAfter = parseRetryAfter(res.headers.get("retry-after"), this.#now());
      await res.body?.cancel();
      if (status >= 200 && status < 300) {
        this.#recorded(event, outbox.markDelivered(event.id, status));
        metrics.webhookDeliveries.inc({ outcome: "delivered" });
        log.debug("webhook delivered", { job_id: event.jobId, event_id: event.id, status });
        return "delivered";
      }
      if (status === 410) {
        this.#recorded(
          event,
          outbox.markDead(event.id, { status, error: "receiver answered 410 Gone" }),
        );
        outbox.markJobEventsDead(event.jobId, "receiver answered 410 Gone");
        metrics.webhookDeliveries.inc({ outcome: "dead" });
        log.warn("webhook receiver gone, deliveries for this job stopped", {
          job_id: event.jobId,
          event_id: event.id,
        });
        return "dead";
      }
      error = status >= 300 && status < 400
        ? `receiver answered ${status} (redirects are not followed)`
        : `receiver answered ${status}`;
    } catch (err) {
      error = err instanceof DOMException && err.name === "TimeoutError"
        ? `receiver did not answer within ${timeout} ms`
        : `cannot reach receiver: ${errorMessage(err)}`;
    }
    const attempts = event.attempts + 1;
    if (attempts >= this.#o.maxAttempts) {
      this.#recorded(event, outbox.markDead(event.id, { status, error }));
      metrics.webhookDeliveries.inc({ outcome: "dead" });
      log.warn("webhook event dead after its last attempt", {
        job_id: event.jobId,
        event_id: event.id,
        attempts,
        error,
      });
      return "dead";
    }
    const delay = retryAfter ?? this.#backoff(attempts);
    this.#recorded(
      event,
      outbox.markRetry(event.id, { status, error, nextAt: this.#now() + delay }),
    );
    metrics.webhookDeliveries.inc({ outcome: "retry" });
    log.info("webhook delivery failed, will retry", {
      job_id: event.jobId,
      event_id: event.id,
      attempts,
      retry_in_ms: delay,
      error,
    });
    return "retry";
  }

  /** A mark that found the event no longer pending changed nothing: said, never hidden. */
  #recorded(event: OutboxEvent, recorded: boolean): void {
    if (recorded) return;
    this.#o.log.warn(
      "webhook event was settled elsewhere, this attempt's outcome is not recorded",
      {
        job_id: event.jobId,
        event_id: event.id,
      },
    );
  }

  /** Full jitter: uniform in [base/2, base × 2^(n-1)] so retries of many events spread out. */
  #backoff(attempts: number): number {
    const ceiling = Math.min(RETRY_CAP, this.#o.retryBase * 2 ** (attempts - 1));
    const floor = Math.min(ceiling, this.#o.retryBase / 2);
    return Math.round(floor + (this.#o.random ?? Math.random)() * (ceiling - floor));
  }
}

/** Retry-After as seconds or an HTTP date, in ms from now; capped at an hour. */
export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Math.min(RETRY_AFTER_CAP, Number(v) * 1000);
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.min(RETRY_AFTER_CAP, Math.max(0, at - now));
}
