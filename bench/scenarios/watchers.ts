// Watching jobs (ADR-0017): what idle event streams cost foreman (memory, and CPU over a quiet
// interval that holds a heartbeat), and how long after a state change its event reaches a watcher
// (the event's `timestamp`, written in the transaction, against the arrival time), with one watcher
// per job and with many on one job.

import { type ForemanProcess, startForeman } from "../../harness/foreman.ts";
import { readEvents } from "../../src/cli/events.ts";
import { postJson } from "../load.ts";
import { rss, startSimProcess, until } from "../processes.ts";
import { quantile } from "../stats.ts";
import { foremanWithBusyWorker } from "./jobs.ts";

export interface WatcherSizes {
  /** Event streams held open on jobs that do not change. */
  idle: number;
  /** The quiet interval whose CPU time is measured, ms (a heartbeat comes every 15 s). */
  quietMs: number;
  /** Jobs run one after another, each with its own watcher. */
  delayJobs: number;
  /** Watchers of one job, for the fan-out delay. */
  fanOut: number;
}

export interface WatcherResults {
  idle: {
    watchers: number;
    /** foreman's resident set before any watcher and with them all open, MiB. */
    rssBeforeMiB: number;
    rssAfterMiB: number;
    /** CPU foreman used over the quiet interval, ms, without watchers and with them. */
    cpuBeforeMs: number;
    cpuAfterMs: number;
    quietMs: number;
  };
  /** State change to watcher, ms, one watcher per job. */
  delay: { p50: number; p99: number; max: number; events: number };
  /** State change to each of `watchers` watchers of one job, ms. */
  fanOut: { watchers: number; p50: number; p99: number; max: number; events: number };
  samples: number[];
}

const TICK_MS = 1000 / 100; // /proc's clock ticks (USER_HZ)

/** CPU time (user and system) `pid` has used, ms, at /proc's 10 ms resolution. */
function cpuMs(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
}

interface Watching {
  /** Arrival delays of the live state events (not the first, which is the state at connect). */
  delays: number[];
  done: Promise<void>;
  stop(): void;
}

/** Opens job `id`'s event stream and times each state event after the first. */
async function watch(fm: ForemanProcess, id: string): Promise<Watching> {
  const abort = new AbortController();
  const res = await fetch(`${fm.url}/jobs/${id}/events`, {
    headers: fm.headers(),
    signal: abort.signal,
  });
  if (res.status !== 200 || !res.body) throw new Error(`events answered ${res.status}`);
  const delays: number[] = [];
  const done = (async () => {
    let first = true;
    for await (const e of readEvents(res.body!, { silence: 120_000 })) {
      if (e.id === undefined) continue; // progress
      const at = Date.now();
      if (!first) delays.push(at - Date.parse(JSON.parse(e.data).timestamp));
      first = false;
    }
  })().catch(() => {});
  return { delays, done, stop: () => abort.abort() };
}

async function watcherCount(fm: ForemanProcess): Promise<number> {
  const text = await (await fetch(`${fm.url}/metrics`, { headers: fm.headers() })).text();
  return Number(/^foreman_watchers (\S+)$/m.exec(text)?.[1]);
}

function submit(fm: ForemanProcess, body: string): Promise<string> {
  return postJson(`${fm.url}/jobs`, body, fm.headers(), AbortSignal.timeout(10_000))
    .then((r) => r.json()).then((j) => j.job_id as string);
}

const job = (numPredict: number) =>
  JSON.stringify({
    model: "a",
    messages: [{ role: "user", content: "hi" }],
    options: { num_predict: numPredict },
  });

export async function watcherBench(
  sizes: WatcherSizes,
  note: (msg: string) => void,
): Promise<WatcherResults> {
  note(`idle cost: ${sizes.idle} event streams on queued jobs, ${sizes.quietMs} ms quiet`);
  const { fm: held, sim: heldSim } = await foremanWithBusyWorker([
    "--max-watchers",
    String(sizes.idle + 10),
  ]);
  let idle: WatcherResults["idle"];
  const streams: Watching[] = [];
  try {
    const jobs = await Promise.all(Array.from({ length: 10 }, () => submit(held, job(1))));
    const quiet = async () => {
      const before = cpuMs(held.pid);
      await new Promise((r) => setTimeout(r, sizes.quietMs));
      return cpuMs(held.pid) - before;
    };
    const rssBeforeMiB = rss(held.pid).rssMiB;
    const cpuBeforeMs = await quiet();
    for (let i = 0; i < sizes.idle; i += 50) {
      const batch = Math.min(50, sizes.idle - i);
      streams.push(
        ...await Promise.all(Array.from({ length: batch }, (_, k) => watch(held, jobs[k % 10]!))),
      );
    }
    await until(async () => await watcherCount(held) === sizes.idle, "every stream open");
    const cpuAfterMs = await quiet();
    idle = {
      watchers: sizes.idle,
      rssBeforeMiB,
      rssAfterMiB: rss(held.pid).rssMiB,
      cpuBeforeMs,
      cpuAfterMs,
      quietMs: sizes.quietMs,
    };
  } finally {
    for (const s of streams) s.stop();
    await held.stop();
    await heldSim.close();
    await Deno.remove(held.dir, { recursive: true }).catch(() => {});
  }

  note(`delay: ${sizes.delayJobs} jobs one after another, one watcher each`);
  const sim = await startSimProcess({ loadMs: 0, tokenMs: 1, models: ["a"] });
  const fm = await startForeman({
    ollamaUrl: sim.url,
    args: ["--max-queue", "1000000", "--max-watchers", String(sizes.fanOut + 10)],
    output: "file",
  });
  try {
    await until(async () => {
      const h = await (await fetch(`${fm.url}/healthz`, { headers: fm.headers() })).json();
      return h.target.reachable === true;
    }, "foreman's first inventory poll");
    // Two jobs in flight: each is watched while it is still queued behind the one before, so
    // its loading, working and done events all arrive live.
    const delays: number[] = [];
    let previous: Watching | undefined;
    for (let i = 0; i < sizes.delayJobs; i++) {
      const w = await watch(fm, await submit(fm, job(50)));
      await previous?.done;
      if (previous) delays.push(...previous.delays);
      previous = w;
    }
    await previous?.done;
    delays.push(...previous!.delays);

    note(`fan-out: ${sizes.fanOut} watchers of one job`);
    const blocker = await submit(fm, job(5000));
    const target = await submit(fm, job(50));
    const many = await Promise.all(Array.from({ length: sizes.fanOut }, () => watch(fm, target)));
    await Promise.all(many.map((w) => w.done));
    void blocker;
    const fan = many.flatMap((w) => w.delays);
    return {
      idle,
      delay: {
        p50: quantile(delays, 0.5),
        p99: quantile(delays, 0.99),
        max: Math.max(...delays),
        events: delays.length,
      },
      fanOut: {
        watchers: sizes.fanOut,
        p50: quantile(fan, 0.5),
        p99: quantile(fan, 0.99),
        max: Math.max(...fan),
        events: fan.length,
      },
      samples: delays,
    };
  } finally {
    await fm.stop();
    await sim.stop();
    await Deno.remove(fm.dir, { recursive: true }).catch(() => {});
  }
}
