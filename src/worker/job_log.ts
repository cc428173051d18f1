// What the worker tells about each job: the wait and run histograms and the finished counter, the
// states a job passes through at debug, and one info line when it ends with where its time went.
// One line per job is what a busy foreman can afford (ADR-0019).

import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import { ENDPOINTS } from "../queue/states.ts";
import type { Job, MovedJob } from "../queue/store.ts";

export class JobLog {
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #now: () => number;
  /** When the job in hand was claimed and started working (epoch ms), for its log line. */
  #timing?: { jobId: string; claimedAt: number; workingAt: number | undefined };

  constructor(options: { log: Logger; metrics: Metrics; now: () => number }) {
    this.#log = options.log;
    this.#metrics = options.metrics;
    this.#now = options.now;
    // Every endpoint's series exists from the start, so a rate over it never begins with a gap.
    for (const endpoint of ENDPOINTS) {
      options.metrics.jobWait.declare({ endpoint });
      options.metrics.jobRun.declare({ endpoint });
    }
  }

  /** The worker takes `job` (loading, or working when folded or chained); returns the time. */
  taken(job: Job): number {
    const started = this.#now();
    this.#metrics.jobWait.observe((started - job.createdAt) / 1000, { endpoint: job.endpoint });
    this.#timing = { jobId: job.id, claimedAt: started, workingAt: undefined };
    if (this.#log.enabled("debug")) {
      this.#log.debug(`job ${job.state}`, {
        job_id: job.id,
        model: job.model,
        state: job.state,
        attempt: job.attempt,
      });
    }
    return started;
  }

  /** The job taken works at the target from now; returns the time. */
  working(job: Job): number {
    const working = this.#now();
    if (this.#timing) this.#timing.workingAt = working;
    if (job.state === "loading" && this.#log.enabled("debug")) {
      this.#log.debug("job working", { job_id: job.id, model: job.model, state: "working" });
    }
    return working;
  }

  /** The worker is done with `job`, taken at `started`, whatever became of it. */
  released(job: Job, started: number): void {
    this.#timing = undefined;
    this.#metrics.jobRun.observe((this.#now() - started) / 1000, { endpoint: job.endpoint });
  }

  /** A job ended: its one info line (warn when it failed), with where its time went. */
  finished(job: MovedJob): void {
    this.#metrics.jobsFinished.inc({ outcome: job.state, endpoint: job.endpoint });
    const t = this.#timing?.jobId === job.id ? this.#timing : undefined;
    const end = job.finishedAt ?? this.#now();
    const fields = {
      job_id: job.id,
      model: job.model,
      endpoint: job.endpoint,
      state: job.state,
      attempt: job.attempt,
      // Queued (since submission or the last requeue), making the model resident, at the target.
      wait_ms: t ? t.claimedAt - job.createdAt : end - job.createdAt,
      load_ms: t?.workingAt === undefined ? null : t.workingAt - t.claimedAt,
      run_ms: t?.workingAt === undefined ? null : end - t.workingAt,
    };
    if (job.state === "failed") this.#log.warn("job failed", { ...fields, error: job.error });
    else this.#log.info(`job ${job.state}`, fields);
  }
}
