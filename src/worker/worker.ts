// The single worker: takes one job at a time by drain-by-model, makes its model resident, runs it at
// the target and records the outcome through the store's guarded transitions. Sync callers waiting
// on /api/chat, /api/generate or the /v1 completions get a stream relayed from its first chunk,
// or a whole answer once the target has sent it all. Once idle, it pins again a model that /v1
// jobs may have unpinned.

import { WakeableSleep } from "../async.ts";
import { errorMessage } from "../log.ts";
import {
  AnswerTooLargeError,
  errorFromBody,
  TargetHttpError,
  TargetUnreachableError,
} from "../ollama/client.ts";
import { isDiskFull } from "../queue/disk_full.ts";
import { isOpenAI } from "../queue/states.ts";
import {
  type Job,
  type MovedJob,
  type NewJob,
  TransitionError,
  type TransitionValues,
} from "../queue/store.ts";
import { sameModel } from "../ollama/models.ts";
import { keepAliveSeconds } from "../units.ts";
import { completionOf, framingOf, incomplete, lastOf, TARGET_PATHS } from "./answers.ts";
import { Checkpoints } from "./checkpoints.ts";
import { JobLog } from "./job_log.ts";
import { type Progress, recordCounter } from "./progress.ts";
import { CallerGoneError, CallerStoppedReadingError, relay, StallError } from "./relay.ts";
import type { Caller, Failure, Outcome, WorkerOptions } from "./types.ts";

const RETRY_CAP = 30_000;
/**
 * How long the worker stays idle before it pins again a model /v1 jobs may have unpinned: long
 * enough that a client sending one request after another is not answered with a re-pin between
 * each (measured in ADR-0016), far shorter than Ollama's default 5-minute expiry.
 */
export const REPIN_IDLE = 1000;
/** Pause after a step failed to write the database (a full disk) before trying again. */
const STORE_RETRY = 1000;

/** Raised inside a run when the job was cancelled from outside. */
class Cancelled extends Error {
  override name = "Cancelled";
}

/** Raised inside a run when foreman stops: not the job's fault, so the job goes back to the queue. */
class Shutdown extends Error {
  override name = "Shutdown";
  constructor() {
    super("foreman is shutting down");
  }
}

export class Worker {
  readonly #o: WorkerOptions;
  readonly #now: () => number;
  readonly #callers = new Map<string, Caller>();
  #current?: { id: string; abort: AbortController; settled: Promise<unknown> };
  readonly #idle = new WakeableSleep();
  /** A job already claimed and working (submit's fold, the chain), for the loop's next step. */
  #handoff?: Job;
  #unreachableStreak = 0;
  /** No job is taken before this time: the target was unreachable (one backoff for all jobs). */
  #pausedUntil = 0;
  /** A job a failed database write left loading or working; put back in the queue first. */
  #stranded?: string;
  /** The loop's signal (start): shutdown ends a re-pin in flight. */
  #signal?: AbortSignal;
  /** Since when the worker has found nothing to do while a re-pin is pending. */
  #idleSince?: number;
  /** How far the working job has got, for watchers. */
  #progress?: Progress;
  /** The WAL's checkpoints, when the worker takes them (WorkerOptions.checkpoints). */
  readonly #checkpoints?: Checkpoints;
  /** The log lines and metrics of each job it takes. */
  readonly #jobLog: JobLog;

  constructor(options: WorkerOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    const { store, log, metrics } = options;
    if (options.checkpoints) this.#checkpoints = new Checkpoints({ store, log });
    this.#jobLog = new JobLog({ log, metrics, now: this.#now });
  }

  /**
   * Stores sync job `input` for `caller`, who is answered through it, and returns the job. When
   * the worker sleeps with nothing queued ahead and the job's model resident, nothing can come
   * between the job's submission and its start, so it is inserted, claimed and started in one
   * transaction (three guarded transitions and their three events, in order, one commit) and handed
   * straight to the loop: no queue read, no second and third commit. Otherwise it is queued.
   */
  submit(input: NewJob, caller: Caller): Job {
    const { store } = this.#o;
    let job: Job;
    if (this.#canFold(input.model)) {
      job = store.txFor([input], () => {
        const queued = store.insertJob(input);
        store.transition("claim", queued);
        return { ...store.transition("startWorking", queued), request: queued.request };
      });
      this.#handoff = job;
    } else {
      job = store.insertJob(input);
    }
    this.#callers.set(job.id, caller);
    this.#idle.wake();
    return job;
  }

  /** Whether a job for `model` submitted now would be the worker's next, with nothing to load. */
  #canFold(model: string): boolean {
    const resident = this.#o.residency.current;
    return this.#idle.sleeping && this.#handoff === undefined && this.#current === undefined &&
      this.#stranded === undefined && this.#now() >= this.#pausedUntil &&
      resident !== undefined && sameModel(resident, model) &&
      this.#o.store.countQueued() === 0 && (this.#o.pendingInserts?.() ?? 0) === 0;
  }

  detach(id: string): void {
    this.#callers.delete(id);
  }

  /** Nudges an idle worker: new work arrived. */
  wake(): void {
    this.#idle.wake();
  }

  /** The job the worker is on, if any. */
  get currentJob(): string | undefined {
    return this.#current?.id;
  }

  /** How far the job in `working` has got (time, and records where the answer streams). */
  get progress(): Readonly<Progress> | undefined {
    return this.#progress;
  }

  /**
   * Cancels job `id`: a queued job is cancelled at once; the running one is aborted at the target
   * and cancelled when its run unwinds. Returns the job afterwards, or undefined if it is unknown.
   */
  async cancel(id: string, reason: string): Promise<Job | undefined> {
    const current = this.#current;
    if (current?.id === id) {
      current.abort.abort(new Cancelled(reason));
      await current.settled;
      return this.#o.store.get(id);
    }
    // A job handed to the loop but not taken yet is dropped with its cancel: it never runs.
    if (this.#handoff?.id === id) this.#handoff = undefined;
    const job = this.#o.store.tryTransition("cancel", id, { error: reason });
    if (job) this.#jobLog.finished(job);
    this.#release(id, CANCELED);
    return this.#o.store.get(id);
  }

  /** Answers every waiting sync caller (shutdown): nobody is left hanging on a dead worker. */
  releaseCallers(failure: Failure): void {
    for (const id of [...this.#callers.keys()]) this.#release(id, failure);
  }

  #release(id: string, failure: Failure): void {
    this.#callers.get(id)?.fail(failure);
    this.#callers.delete(id);
  }

  /** Runs jobs until `signal` aborts; sleeps while there is nothing to do. */
  async start(signal: AbortSignal): Promise<void> {
    this.#signal = signal;
    this.#checkpoints?.start(signal);
    signal.addEventListener("abort", () => this.#current?.abort.abort(new Shutdown()), {
      once: true,
    });
    while (!signal.aborted) {
      let did: Outcome | undefined;
      try {
        did = await this.runOnce();
      } catch (err) {
        // Only a database write can fail here (a full disk): wait and try again, staying up.
        this.#o.log.error("worker cannot write the database, retrying", {
          job_id: this.#stranded,
          error: errorMessage(err),
        });
        this.#pausedUntil = this.#now() + STORE_RETRY;
      }
      if (did) this.#idleSince = undefined;
      if (did || signal.aborted) continue;
      let readyAt = this.#o.store.nextReadyAt();
      if (readyAt !== undefined) readyAt = Math.max(readyAt, this.#pausedUntil);
      let wait = readyAt === undefined ? 60_000 : Math.max(5, readyAt - this.#now());
      // Once nothing has been written for a while, the WAL is copied and its file emptied.
      const quiet = this.#checkpoints?.untilQuiet();
      if (quiet !== undefined) {
        if (quiet <= 0) {
          this.#checkpoints?.checkpoint("TRUNCATE");
          continue;
        }
        wait = Math.min(wait, Math.ceil(quiet));
      }
      if (this.#o.residency.unpinned) {
        this.#idleSince ??= this.#now();
        const due = this.#idleSince + REPIN_IDLE;
        if (this.#now() >= due) {
          await this.#repin();
          this.#idleSince = undefined;
          continue;
        }
        wait = Math.min(wait, due - this.#now());
      }
      await this.#idle.sleep(wait, signal);
    }
    this.#checkpoints?.stop();
    // A job chained or folded but not started yet goes back to the queue with its attempt, as a
    // running one does at shutdown (a sync one is cancelled at the next start, its caller gone).
    const left = this.#handoff;
    this.#handoff = undefined;
    if (left) {
      try {
        this.#o.store.tryTransition("requeue", left, {
          error: new Shutdown().message,
          notBefore: 0,
          refund: true,
        });
      } catch (err) {
        this.#o.log.error("worker cannot write the database at shutdown", {
          job_id: left.id,
          error: errorMessage(err),
        });
      }
    }
  }

  /** Takes and runs the next job, if one is ready. */
  async runOnce(): Promise<Outcome | undefined> {
    const { store, residency, maxWait } = this.#o;
    const handed = this.#handoff;
    if (handed) {
      this.#handoff = undefined;
      return await this.#take(handed);
    }
    if (this.#now() < this.#pausedUntil) return undefined;
    if (this.#stranded) {
      // Not the job's fault: it gets its attempt back and runs again.
      const error = "foreman could not write its database; the job runs again";
      store.tryTransition("requeue", this.#stranded, { error, notBefore: 0, refund: true });
      this.#stranded = undefined;
    }
    const next = store.next(residency.current, { maxWait });
    if (!next) return undefined;
    const claimed = store.tryTransition("claim", next);
    if (!claimed) return undefined;
    return await this.#take({ ...claimed, request: next.request });
  }

  /** Runs job `job`, claimed (loading) or already working; it is the worker's until it settles. */
  async #take(job: Job): Promise<Outcome> {
    try {
      if (job.kind === "sync" && !this.#callers.has(job.id)) {
        // The caller left between submit and now (its cancel lost the race with the claim).
        return this.#cancelled(job.id, "caller went away");
      }
      const abort = new AbortController();
      const run = this.#run(job, abort.signal);
      this.#current = { id: job.id, abort, settled: run.catch(() => {}) };
      return await run;
    } catch (err) {
      this.#stranded = job.id;
      throw err;
    } finally {
      this.#current = undefined;
    }
  }

  /**
   * Pins the resident model again after /v1 jobs, from the idle loop: nothing else runs, so the
   * target still sees one request of the worker's at a time. A failure is logged; an unreachable
   * target makes residency forget what it held, as for a job.
   */
  async #repin(): Promise<void> {
    const { residency, log } = this.#o;
    if (!residency.unpinned) return;
    try {
      await residency.repin({ signal: this.#signal });
    } catch (err) {
      if (this.#signal?.aborted) return;
      log.warn("cannot pin the worker model again after /v1 jobs", {
        model: residency.current,
        error: errorMessage(err),
      });
      if (err instanceof TargetUnreachableError) residency.forget();
      else residency.pinned(); // the target refused it: asking again would be refused again
    }
  }

  async #run(job: Job, signal: AbortSignal): Promise<Outcome> {
    const started = this.#jobLog.taken(job);
    let inferring = false;
    try {
      // A folded job (submit) comes working: its model was resident and nothing came between.
      if (job.state === "loading") {
        await this.#o.residency.ensure(job.model, { endpoint: job.endpoint, signal });
        this.#o.store.transition("startWorking", job);
      }
      this.#o.residency.running(job.endpoint);
      this.#progress = { jobId: job.id, since: this.#jobLog.working(job), records: null };
      inferring = true;
      const outcome = job.kind === "sync"
        ? await this.#runSync(job, signal)
        : await this.#runAsync(job, signal);
      if (this.#unreachableStreak > 0) {
        this.#unreachableStreak = 0;
        this.#o.onTargetNews?.(); // reached again
      }
      return outcome;
    } catch (err) {
      // A write that failed for lack of disk says nothing about the job: never fail it for that.
      if (isDiskFull(err)) throw err;
      return this.#handleFailure(job, err, { signal, inferring });
    } finally {
      this.#progress = undefined;
      this.#jobLog.released(job, started);
    }
  }

  /** Sends the job to the target; resolves with a 2xx response or throws TargetHttpError. */
  async #send(
    job: Job,
    options: { stream?: boolean; signal: AbortSignal },
  ): Promise<Response> {
    const { stream, signal } = options;
    const body = JSON.parse(job.request);
    // Ollama's /v1 routes take no keep_alive; the worker pins again after them (#repin).
    if (!isOpenAI(job.endpoint)) body.keep_alive = keepAliveSeconds(this.#o.keepAlive);
    if (stream !== undefined) body.stream = stream;
    const sent = this.#o.client.fetch(TARGET_PATHS[job.endpoint], {
      method: "POST",
      body: JSON.stringify(body),
      contentType: "application/json",
      signal,
    });
    this.#checkpoints?.soon();
    const res = await sent;
    if (res.ok) return res;
    const text = await this.#o.client.readText(res, { path: job.endpoint, signal }).catch(() => "");
    throw new TargetHttpError(res.status, errorFromBody(text, res.status));
  }

  async #runSync(job: Job, signal: AbortSignal): Promise<Outcome> {
    // The client's bounds: a silence of the target timeout, a line of max_answer.
    const { timeout, maxAnswer } = this.#o.client;
    const res = await this.#send(job, { signal });
    const caller = this.#callers.get(job.id);
    if (!caller) {
      await res.body?.cancel();
      throw new Cancelled("caller went away");
    }
    const framing = framingOf(job.endpoint, res.headers);
    // Where the answer streams, its records are counted as they pass, for watchers: a byte search
    // per chunk, whether or not anyone watches, so one who comes late sees the whole count.
    const count = recordCounter(res.headers.get("content-type"));
    if (!count || framing === "json") {
      // A whole answer (stream:false, native or /v1): read in full, then handed over as bytes, so
      // no stream runs per chunk, and the target is done with the job before its caller is
      // written to, which the next job's start can overlap.
      const bytes = await this.#readWhole(job, res, signal);
      const last = lastOf(bytes, framing);
      this.#callers.delete(job.id);
      caller.answer({ status: res.status, headers: res.headers, body: bytes });
      const problem = incomplete(last, framing);
      if (problem !== undefined) return this.#failed(job.id, problem);
      this.#complete(job, { result: last || "{}" }, signal);
      return { job: job.id, outcome: "done" };
    }
    const progress = this.#progress;
    if (progress) progress.records = 0;
    // The relay ends on an abort (cancel, shutdown) even while the caller is not reading, and
    // treats a caller that read nothing for the target timeout as gone: the worker never waits
    // on a caller.
    const r = relay(res.body!, {
      idleTimeout: timeout,
      maxLine: maxAnswer,
      signal,
      framing,
      onChunk: progress ? (chunk) => progress.records! += count(chunk) : undefined,
    });
    // From here a failure reaches the caller inside the stream, never as a second answer.
    this.#callers.delete(job.id);
    caller.answer({ status: res.status, headers: res.headers, body: r.readable });
    // Settles when the target's answer has ended: the job completes (and the next one starts)
    // while the relay hands the caller its last bytes.
    let last: string;
    try {
      last = await r.done;
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      if (err instanceof CallerStoppedReadingError) throw new Cancelled(err.message);
      if (err instanceof CallerGoneError) throw new Cancelled("caller went away");
      if (err instanceof AnswerTooLargeError) {
        return this.#failed(job.id, err.message, { status: 502 });
      }
      // Bytes may already be with the caller: a retry would repeat them, so the job ends here.
      return this.#failed(job.id, `the target stopped mid-response: ${errorMessage(err)}`);
    }
    const problem = incomplete(last, framing);
    if (problem !== undefined) return this.#failed(job.id, problem);
    // A sync job's result is never shown; a stream of events has no final object to keep.
    const result = framing === "sse" ? "{}" : last || "{}";
    this.#complete(job, { result }, signal);
    return { job: job.id, outcome: "done" };
  }

  async #runAsync(job: Job, signal: AbortSignal): Promise<Outcome> {
    const res = await this.#send(job, { stream: false, signal });
    const bytes = await this.#readWhole(job, res, signal);
    this.#complete(job, completionOf(bytes, job.endpoint), signal);
    return { job: job.id, outcome: "done" };
  }

  /**
   * The whole body of a target answer nothing streams from, each read under the target timeout
   * and the whole under max_answer. No byte of it has reached anyone, so a stall or a cut is the
   * target's fault and the job runs again (TargetUnreachableError); an answer too large is final.
   */
  async #readWhole(job: Job, res: Response, signal: AbortSignal): Promise<Uint8Array<ArrayBuffer>> {
    try {
      return await this.#o.client.readBytes(res, { path: TARGET_PATHS[job.endpoint], signal });
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      if (err instanceof AnswerTooLargeError) throw err;
      throw new TargetUnreachableError(`the target stopped mid-response: ${errorMessage(err)}`, {
        silent: err instanceof TargetUnreachableError && err.silent,
      });
    }
  }

  #handleFailure(
    job: Job,
    err: unknown,
    options: { signal: AbortSignal; inferring: boolean },
  ): Outcome {
    const { log, maxAttempts, residency } = this.#o;
    const { signal } = options;
    if (signal.aborted) {
      const reason = signal.reason;
      if (reason instanceof Shutdown) {
        return this.#requeue(job, reason.message, { delay: 0, refund: true });
      }
      return this.#cancelled(job.id, reason instanceof Cancelled ? reason.message : "cancelled");
    }
    if (err instanceof Cancelled) return this.#cancelled(job.id, err.message);
    // The same answer would be as large again: no retry.
    if (err instanceof AnswerTooLargeError) {
      return this.#failed(job.id, err.message, { status: 502 });
    }
    if (err instanceof TargetUnreachableError || err instanceof StallError) {
      // Never the job's fault: give the attempt back and try again later. A model that went
      // silent on the job itself is loaded afresh first: Ollama 0.11.4 can leave a runner that
      // never answers again after a cancel, until the model is unloaded (docs/reliability.md).
      const silent = err instanceof StallError || (err as TargetUnreachableError).silent;
      if (options.inferring && silent) residency.reloadNext(job.model);
      else residency.forget();
      this.#unreachableStreak++;
      this.#o.onTargetNews?.();
      const delay = Math.min(RETRY_CAP, this.#o.retryBase * 2 ** (this.#unreachableStreak - 1));
      // The target is down for every job, not just this one: trying the next queued job at once
      // would only grow the streak once per queued job and park the whole queue at the cap.
      this.#pausedUntil = this.#now() + delay;
      log.warn("target unreachable, job requeued", {
        job_id: job.id,
        model: job.model,
        state: "queued",
        retry_in_ms: delay,
        error: errorMessage(err),
      });
      return this.#requeue(job, errorMessage(err), { delay, refund: true });
    }
    if (err instanceof TargetHttpError) {
      const retryable = err.status >= 500 || err.status === 408 || err.status === 429;
      if (retryable && job.attempt < maxAttempts) {
        const delay = Math.min(RETRY_CAP, this.#o.retryBase * 2 ** (job.attempt - 1));
        log.warn("target error, job requeued", {
          job_id: job.id,
          model: job.model,
          state: "queued",
          status: err.status,
          attempt: job.attempt,
          error: err.message,
        });
        return this.#requeue(job, err.message, { delay, refund: false });
      }
      return this.#failed(job.id, err.message, { status: err.status });
    }
    log.error("job failed unexpectedly", { job_id: job.id, error: errorMessage(err) });
    return this.#failed(job.id, `foreman could not run the job: ${errorMessage(err)}`);
  }

  /**
   * Puts the job back in the queue for another try in `delay` ms; `refund` gives the attempt
   * back when the failure was not the job's.
   */
  #requeue(job: Job, error: string, options: { delay: number; refund: boolean }): Outcome {
    const { delay, refund } = options;
    this.#o.store.transition("requeue", job, { error, notBefore: this.#now() + delay, refund });
    return { job: job.id, outcome: "requeued", reason: error };
  }

  /** Fails the job; a waiting sync caller gets `status` (default 500) and the error. */
  #failed(id: string, error: string, options: { status?: number } = {}): Outcome {
    const { status = 500 } = options;
    const job = this.#o.store.tryTransition("fail", id, { error });
    if (job) this.#jobLog.finished(job);
    this.#release(id, { status, message: error });
    return { job: id, outcome: "failed" };
  }

  #cancelled(id: string, reason: string): Outcome {
    const job = this.#o.store.tryTransition("cancel", id, { error: reason });
    if (job) this.#jobLog.finished(job);
    this.#release(id, CANCELED);
    return { job: id, outcome: "cancelled" };
  }

  /**
   * Completes `job`. When the next job by drain-by-model is for the resident model, it is claimed
   * and started in the same transaction (the chain: one commit between two jobs instead of three,
   * each change still its own guarded transition and event, in order) and handed to the loop's
   * next step; the target is done with `job`, so it still runs one inference at a time. It
   * commits before the worker yields, so a sync caller's answer, handed over already, goes out
   * after its job is done: a caller that asks about its job next finds it done.
   */
  #complete(job: Job, values: TransitionValues["complete"], signal: AbortSignal): void {
    const { store } = this.#o;
    const next = this.#chainable(signal);
    if (next) {
      try {
        const [done, started] = store.txFor([job, next], () => {
          const done = store.transition("complete", job, values);
          store.transition("claim", next);
          return [done, store.transition("startWorking", next)];
        });
        this.#handoff = { ...started, request: next.request };
        this.#completed(done);
        return;
      } catch (err) {
        // Nothing was written: the next job is left to the loop, this one completes alone.
        if (!(err instanceof TransitionError)) throw err;
      }
    }
    this.#completed(store.transition("complete", job, values));
  }

  /** The job to chain after the one completing: the loop's next pick, if its model is resident. */
  #chainable(signal: AbortSignal): Job | undefined {
    const { store, residency, maxWait } = this.#o;
    const resident = residency.current;
    if (signal.aborted || resident === undefined || this.#handoff || this.#stranded) return;
    if (this.#now() < this.#pausedUntil) return;
    const next = store.next(resident, { maxWait });
    return next && sameModel(next.model, resident) ? next : undefined;
  }

  /** A job is done: a native one carried foreman's keep_alive, so the model is pinned again. */
  #completed(job: MovedJob): void {
    if (!isOpenAI(job.endpoint)) this.#o.residency.pinned();
    this.#jobLog.finished(job);
  }
}

/** What a caller whose job was cancelled gets, as Ollama answers a request cancelled under it. */
const CANCELED: Failure = { status: 499, message: "request canceled" };
