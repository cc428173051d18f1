// POST /jobs throughput: how many jobs per second foreman durably accepts (each 202 follows the
// commit of its row) and how long one submission takes. The worker is held by a stalled job while
// jobs arrive, so the figure is the submit path alone, not the submit path racing the worker.

import { OllamaSim } from "../../sim/mod.ts";
import { type ForemanProcess, startForeman } from "../../harness/foreman.ts";
import { closedLoop, postJson } from "../load.ts";
import { until } from "../processes.ts";
import { type Batch, medianBatch, summarize } from "../stats.ts";

export interface JobsSizes {
  rounds: number;
  c32: number;
  c1: number;
}

export interface JobsResults {
  c32: Batch;
  c1: Batch;
  rounds: { c32: Batch; c1: Batch }[];
  samples: number[];
  firstError?: string;
}

export const JOB_BODY = JSON.stringify({
  model: "a",
  messages: [{ role: "user", content: "Summarise the attached note in one line." }],
});

/**
 * A foreman whose worker is held by one job the simulator never answers, so that jobs submitted
 * afterwards stay queued and nothing but the submit path runs. (A target that is down would not do:
 * the worker then claims and requeues queued jobs one after another, writing as it goes.)
 */
export async function foremanWithBusyWorker(
  args: string[] = [],
): Promise<{ fm: ForemanProcess; sim: OllamaSim }> {
  const sim = await OllamaSim.start({ loadMs: 0, tokenMs: 1, models: ["a", "b", "c"] });
  const fm = await startForeman({
    ollamaUrl: sim.url,
    args: ["--max-queue", "1000000", ...args],
    output: "file",
  });
  await until(async () => {
    const h = await (await fetch(`${fm.url}/healthz`, { headers: fm.headers() })).json();
    return h.target.reachable === true;
  }, "foreman's first inventory poll");
  // Every inference request stalls, so a restarted daemon is held the same way.
  sim.stallNext(1_000_000);
  const r = await postJson(`${fm.url}/jobs`, JOB_BODY, fm.headers(), AbortSignal.timeout(10_000));
  const { job_id } = await r.json();
  await until(async () => {
    const j = await (await fetch(`${fm.url}/jobs/${job_id}`, { headers: fm.headers() })).json();
    return j.state !== "queued";
  }, "the worker to take the stalling job");
  return { fm, sim };
}

export async function queuedCount(fm: ForemanProcess): Promise<number> {
  const h = await (await fetch(`${fm.url}/healthz`, { headers: fm.headers() })).json();
  return h.queue.queued + h.queue.running;
}

/** Submits `count` jobs with `concurrency` in flight and checks every accepted one is stored. */
export async function submitJobs(
  fm: ForemanProcess,
  count: number,
  concurrency: number,
  body = JOB_BODY,
): Promise<{ batch: Batch; latencies: number[]; firstError?: string }> {
  const before = await queuedCount(fm);
  const res = await closedLoop(async (_i, signal) => {
    const r = await postJson(`${fm.url}/jobs`, body, fm.headers(), signal);
    await r.arrayBuffer();
    if (r.status !== 202) throw new Error(`POST /jobs answered ${r.status}`);
  }, { concurrency, count, deadlineMs: 600_000 });
  const stored = (await queuedCount(fm)) - before;
  if (stored !== res.latencies.length) {
    throw new Error(`foreman accepted ${res.latencies.length} jobs but holds ${stored}`);
  }
  return {
    batch: summarize(res.latencies, res.wallMs, res.errors),
    latencies: res.latencies,
    firstError: res.firstError,
  };
}

export async function jobsBench(
  sizes: JobsSizes,
  note: (msg: string) => void,
): Promise<JobsResults> {
  const rounds: { c32: Batch; c1: Batch }[] = [];
  const samples: number[] = [];
  let firstError: string | undefined;
  for (let r = 0; r < sizes.rounds; r++) {
    note(`round ${r + 1}/${sizes.rounds}: ${sizes.c32} jobs at concurrency 32, ${sizes.c1} at 1`);
    // A fresh database each round, so later rounds do not run against a fuller queue.
    const { fm, sim } = await foremanWithBusyWorker();
    try {
      const c32 = await submitJobs(fm, sizes.c32, 32);
      const c1 = await submitJobs(fm, sizes.c1, 1);
      rounds.push({ c32: c32.batch, c1: c1.batch });
      samples.push(...c32.latencies);
      firstError ??= c32.firstError ?? c1.firstError;
    } finally {
      await fm.stop();
      await sim.close();
      await Deno.remove(fm.dir, { recursive: true }).catch(() => {});
    }
  }
  return {
    c32: medianBatch(rounds.map((r) => r.c32)),
    c1: medianBatch(rounds.map((r) => r.c1)),
    rounds,
    samples,
    firstError,
  };
}
