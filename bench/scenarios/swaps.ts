// Drain-by-model against plain FIFO on one backlog that interleaves three models, with a scaled
// model-load cost. FIFO is the same backlog sent straight to the simulator in order, one request at
// a time: a single worker without a scheduler. Swaps are counted from the simulator's own load log.

import { OllamaSim } from "../../sim/mod.ts";
import { startForeman } from "../../harness/foreman.ts";
import { postJson } from "../load.ts";
import { until } from "../processes.ts";

export interface SwapSizes {
  jobs: number;
  /** Scaled model-load time (the real cost is about 100 times more: 2 s). */
  loadMs: number;
  orders: ("round-robin" | "random")[];
}

export interface PolicyRun {
  /** Worker-model loads after the first model was resident: each one is a swap. */
  swaps: number;
  makespanMs: number;
}

export interface SwapResult {
  order: string;
  jobs: number;
  models: number;
  loadMs: number;
  drainByModel: PolicyRun;
  fifo: PolicyRun;
}

const MODELS = ["m1", "m2", "m3"];
const EMBED = "embed-e";
const TOKENS = 4;

/** The backlog's model sequence: strictly interleaved, or shuffled with a fixed seed. */
function backlog(order: string, jobs: number): string[] {
  const seq = Array.from({ length: jobs }, (_, i) => MODELS[i % MODELS.length]!);
  if (order === "random") {
    let x = 7;
    for (let i = seq.length - 1; i > 0; i--) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      const j = x % (i + 1);
      [seq[i], seq[j]] = [seq[j]!, seq[i]!];
    }
  }
  return seq;
}

function chatBody(model: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    model,
    messages: [{ role: "user", content: "hi" }],
    options: { num_predict: TOKENS },
    ...extra,
  });
}

const workerLoads = (sim: OllamaSim, after: number) =>
  sim.events.filter((e) => e.kind === "load" && e.at >= after && !e.model.startsWith(EMBED))
    .length;

async function drainByModel(seq: string[], loadMs: number): Promise<PolicyRun> {
  const sim = await OllamaSim.start({
    loadMs,
    tokenMs: 1,
    models: [...MODELS, EMBED],
    maxLoaded: 2,
  });
  const fm = await startForeman({
    ollamaUrl: sim.url,
    args: ["--max-queue", "1000000", "--embed-model", EMBED],
    output: "file",
  });
  try {
    const headers = fm.headers();
    const job = async (path: string) => await (await fetch(`${fm.url}${path}`, { headers })).json();
    // A long job for the first model holds the worker while the whole backlog is queued behind it.
    const blockerTokens = Math.max(1500, seq.length * 5);
    const blocker = await (await postJson(
      `${fm.url}/jobs`,
      JSON.stringify({
        model: seq[0],
        messages: [{ role: "user", content: "hold" }],
        options: { num_predict: blockerTokens },
      }),
      headers,
      AbortSignal.timeout(10_000),
    )).json();
    await until(async () => (await job(`/jobs/${blocker.job_id}`)).state === "working", "blocker");
    const ids: string[] = [];
    for (const model of seq) {
      const r = await postJson(
        `${fm.url}/jobs`,
        chatBody(model),
        headers,
        AbortSignal.timeout(10_000),
      );
      ids.push((await r.json()).job_id);
    }
    const b = await job(`/jobs/${blocker.job_id}`);
    if (b.state !== "working") {
      throw new Error("the blocker finished before the backlog was queued: raise its length");
    }
    await until(
      async () =>
        (await job(`/jobs/${ids.at(-1)}`)).state === "done" &&
        (await fetch(`${fm.url}/healthz`, { headers }).then((r) => r.json())).queue.queued === 0,
      "the backlog to drain",
      { timeout: 600_000, interval: 50 },
    );
    const started = Date.parse((await job(`/jobs/${blocker.job_id}`)).finished_at);
    let last = 0;
    for (const id of ids) {
      const j = await job(`/jobs/${id}`);
      if (j.state !== "done") throw new Error(`backlog job ${id} ended ${j.state}`);
      last = Math.max(last, Date.parse(j.finished_at));
    }
    // Sim event times are epoch ms with fractions; the blocker's end is the backlog's start.
    return { swaps: workerLoads(sim, started), makespanMs: last - started };
  } finally {
    await fm.stop();
    await sim.close();
    await Deno.remove(fm.dir, { recursive: true }).catch(() => {});
  }
}

async function fifo(seq: string[], loadMs: number): Promise<PolicyRun> {
  const sim = await OllamaSim.start({
    loadMs,
    tokenMs: 1,
    models: [...MODELS, EMBED],
    maxLoaded: 2,
  });
  try {
    const signal = () => AbortSignal.timeout(30_000);
    // The same residency foreman keeps: the embedder pinned in slot 1, the first model in slot 2.
    // Worker requests keep Ollama's default keep_alive, so the target evicts a worker model, never
    // the pinned embedder, when the next model needs the slot.
    await (await postJson(
      `${sim.url}/api/embed`,
      JSON.stringify({ model: EMBED, input: [], keep_alive: -1 }),
      {},
      signal(),
    )).arrayBuffer();
    await (await postJson(
      `${sim.url}/api/chat`,
      chatBody(seq[0]!, { stream: false }),
      {},
      signal(),
    ))
      .arrayBuffer();
    const started = performance.timeOrigin + performance.now();
    const t0 = performance.now();
    for (const model of seq) {
      const r = await postJson(
        `${sim.url}/api/chat`,
        chatBody(model, { stream: false }),
        {},
        signal(),
      );
      await r.arrayBuffer();
    }
    return { swaps: workerLoads(sim, started), makespanMs: performance.now() - t0 };
  } finally {
    await sim.close();
  }
}

export async function swapBench(
  sizes: SwapSizes,
  note: (msg: string) => void,
): Promise<SwapResult[]> {
  const out: SwapResult[] = [];
  for (const order of sizes.orders) {
    const seq = backlog(order, sizes.jobs);
    note(`${order} backlog of ${sizes.jobs} jobs: drain-by-model through foreman`);
    const dbm = await drainByModel(seq, sizes.loadMs);
    note(`${order} backlog of ${sizes.jobs} jobs: FIFO straight to the simulator`);
    const ff = await fifo(seq, sizes.loadMs);
    out.push({
      order,
      jobs: sizes.jobs,
      models: MODELS.length,
      loadMs: sizes.loadMs,
      drainByModel: dbm,
      fifo: ff,
    });
  }
  return out;
}
