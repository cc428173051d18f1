// Memory and start-up: the daemon's resident set when idle and when 100 000 jobs wait in its queue
// (behind a job the simulator never answers, so they stay queued), and the time from spawning the daemon to a healthy
// /healthz, on an empty database and on one holding the whole backlog.

import { daemonArgs } from "../../src/launcher.ts";
import { OllamaSim } from "../../sim/mod.ts";
import { freePort } from "../../harness/foreman.ts";
import { benchServeFlags, rss, until } from "../processes.ts";
import { median } from "../stats.ts";
import { foremanWithBusyWorker, queuedCount, submitJobs } from "./jobs.ts";

export interface MemorySizes {
  queued: number;
  startups: number;
}

export interface MemoryResults {
  idleRssMiB: number;
  /** After the backlog was submitted over HTTP, and again after a few idle seconds. */
  queuedRssMiB: number;
  queuedPeakMiB: number;
  queuedSettledRssMiB: number;
  /** A fresh daemon opening the database that holds the backlog. */
  restartedQueuedRssMiB: number;
  queued: number;
  /** Submissions per second and p99 latency while filling the queue (it deepens as it goes). */
  fillRate: number;
  fillP99: number;
  startupEmptyMs: number;
  startupQueuedMs: number;
  startupSamples: { empty: number[]; queued: number[] };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Spawns the daemon as `deno task start` would and times it to the first healthy /healthz. */
async function timedStart(dir: string, ollamaUrl: string): Promise<number> {
  const port = freePort();
  const args = daemonArgs(benchServeFlags(dir, port, ollamaUrl), () => undefined);
  const t0 = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: dir,
    env: childEnv(),
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    let elapsed = NaN;
    await until(
      async () => {
        try {
          const res = await fetch(`http://127.0.0.1:${port}/healthz`);
          await res.body?.cancel();
          if (res.ok) elapsed = performance.now() - t0;
          return res.ok;
        } catch {
          return false;
        }
      },
      "the daemon to answer /healthz",
      { timeout: 60_000, interval: 2 },
    );
    return elapsed;
  } finally {
    child.kill("SIGTERM");
    await child.status;
  }
}

/** What the daemon needs from the parent environment: nothing named FOREMAN_*. */
function childEnv(): Record<string, string> {
  const out: Record<string, string> = { NO_COLOR: "1" };
  for (const name of ["PATH", "HOME", "DENO_DIR", "XDG_CACHE_HOME", "TMPDIR"]) {
    const v = Deno.env.get(name);
    if (v !== undefined) out[name] = v;
  }
  return out;
}

export async function memoryBench(
  sizes: MemorySizes,
  note: (msg: string) => void,
): Promise<MemoryResults> {
  note("start-up time on an empty database");
  const sim = await OllamaSim.start({ loadMs: 0, tokenMs: 1, models: ["a", "b", "c"] });
  const empty: number[] = [];
  try {
    for (let i = 0; i < sizes.startups + 1; i++) {
      const dir = await Deno.makeTempDir({ prefix: "foreman-bench-" });
      await Deno.writeTextFile(`${dir}/foreman.toml`, "");
      const ms = await timedStart(dir, sim.url);
      if (i > 0) empty.push(ms); // the first start also fills Deno's transpile cache
      await Deno.remove(dir, { recursive: true });
    }
  } finally {
    await sim.close();
  }

  note("idle resident set");
  const { fm, sim: stalled } = await foremanWithBusyWorker();
  try {
    await sleep(2000);
    const idle = rss(fm.pid).rssMiB;
    note(`submitting ${sizes.queued} jobs behind a stalled one`);
    const fill = await submitJobs(fm, sizes.queued, 32);
    const queued = await queuedCount(fm);
    const after = rss(fm.pid);
    await sleep(5000);
    const settled = rss(fm.pid).rssMiB;

    note(`restart on a database with ${queued} queued jobs`);
    await fm.restart();
    await sleep(2000);
    const restarted = rss(fm.pid).rssMiB;
    await fm.stop();
    const queuedStarts: number[] = [];
    for (let i = 0; i < sizes.startups; i++) {
      queuedStarts.push(await timedStart(fm.dir, stalled.url));
    }
    return {
      idleRssMiB: idle,
      queuedRssMiB: after.rssMiB,
      queuedPeakMiB: after.peakMiB,
      queuedSettledRssMiB: settled,
      restartedQueuedRssMiB: restarted,
      queued,
      fillRate: fill.batch.rate,
      fillP99: fill.batch.p99,
      startupEmptyMs: median(empty),
      startupQueuedMs: median(queuedStarts),
      startupSamples: { empty, queued: queuedStarts },
    };
  } finally {
    await fm.stop();
    await stalled.close();
    await Deno.remove(fm.dir, { recursive: true }).catch(() => {});
  }
}
