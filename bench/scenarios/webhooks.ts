// Webhook delivery: how long after a state change its event reaches the receiver (the event's
// `timestamp` against the arrival time), and how many deliveries per second the dispatcher makes
// when a backlog of events is due. The floor to compare with is the same POST sent by a plain
// client to the same receiver.

import { startForeman } from "../../harness/foreman.ts";
import { type Received, startReceiver } from "../../harness/receiver.ts";
import { closedLoop, postJson } from "../load.ts";
import { startSimProcess, until } from "../processes.ts";
import { type Batch, quantile, summarize } from "../stats.ts";
import { foremanWithBusyWorker } from "./jobs.ts";

export interface WebhookSizes {
  /** Jobs run one after another, each reporting 4 events (queued, loading, working, done). */
  latencyJobs: number;
  /** Jobs submitted in a burst behind a stalled one: one due `queued` event each. */
  burstJobs: number;
}

export interface WebhookResults {
  latency: { p50: number; p99: number; max: number; events: number };
  /** Per event type. */
  byState: Record<string, { p50: number; p99: number }>;
  burst: { events: number; perSecond: number; spanMs: number };
  /** A plain client POSTing the same bodies to the receiver, 8 at a time (the dispatcher's). */
  floor: Batch;
  samples: number[];
}

function latencies(received: Received[]): { all: number[]; byState: Map<string, number[]> } {
  const all: number[] = [];
  const byState = new Map<string, number[]>();
  for (const r of received) {
    const ms = r.at - Date.parse(String(r.json.timestamp));
    all.push(ms);
    const state = String(r.json.state);
    if (!byState.has(state)) byState.set(state, []);
    byState.get(state)!.push(ms);
  }
  return { all, byState };
}

export async function webhookBench(
  sizes: WebhookSizes,
  note: (msg: string) => void,
): Promise<WebhookResults> {
  const receiver = await startReceiver();
  const hostArgs = ["--webhook-hosts", `127.0.0.1:${receiver.port}`];
  try {
    note(`event latency: ${sizes.latencyJobs} jobs, one at a time`);
    const sim = await startSimProcess({ loadMs: 0, tokenMs: 1, models: ["a"] });
    const fm = await startForeman({
      ollamaUrl: sim.url,
      args: ["--max-queue", "1000000", ...hostArgs],
      output: "file",
    });
    let lat: ReturnType<typeof latencies>;
    try {
      const body = JSON.stringify({
        model: "a",
        messages: [{ role: "user", content: "hi" }],
        options: { num_predict: 1 },
        state_webhook_url: `${receiver.url}/hook`,
      });
      for (let i = 0; i < sizes.latencyJobs; i++) {
        const before = receiver.received.length;
        await (await postJson(`${fm.url}/jobs`, body, fm.headers(), AbortSignal.timeout(10_000)))
          .arrayBuffer();
        await until(() => receiver.received.length >= before + 4, "a job's four events", {
          timeout: 10_000,
          interval: 2,
        });
      }
      lat = latencies(receiver.received.splice(0));
    } finally {
      await fm.stop();
      await sim.stop();
      await Deno.remove(fm.dir, { recursive: true }).catch(() => {});
    }

    note(`delivery rate: ${sizes.burstJobs} queued events due at once`);
    const { fm: held, sim: heldSim } = await foremanWithBusyWorker(hostArgs);
    let burst: WebhookResults["burst"];
    try {
      receiver.received.splice(0);
      const body = JSON.stringify({
        model: "a",
        messages: [{ role: "user", content: "hi" }],
        state_webhook_url: `${receiver.url}/hook`,
      });
      await closedLoop(async (_i, signal) => {
        await (await postJson(`${held.url}/jobs`, body, held.headers(), signal)).arrayBuffer();
      }, { concurrency: 32, count: sizes.burstJobs, deadlineMs: 300_000 });
      const submitted = () => receiver.received.filter((r) => r.json.previous_state === null);
      await until(() => submitted().length >= sizes.burstJobs, "every queued event", {
        timeout: 300_000,
        interval: 20,
      });
      const queued = submitted();
      const first = Math.min(...queued.map((r) => Date.parse(String(r.json.timestamp))));
      const last = Math.max(...queued.map((r) => r.at));
      burst = {
        events: queued.length,
        perSecond: queued.length / ((last - first) / 1000),
        spanMs: last - first,
      };
    } finally {
      await held.stop();
      await heldSim.close();
      await Deno.remove(held.dir, { recursive: true }).catch(() => {});
    }

    note("floor: the same POSTs from a plain client");
    const sample = JSON.stringify({ job_id: "X", state: "queued", timestamp: new Date() });
    const floorRun = await closedLoop(async (_i, signal) => {
      await (await postJson(`${receiver.url}/hook`, sample, {}, signal)).arrayBuffer();
    }, { concurrency: 8, count: Math.max(500, sizes.burstJobs), warmup: 50 });
    receiver.received.splice(0);

    const byState: Record<string, { p50: number; p99: number }> = {};
    for (const [state, ms] of lat.byState) {
      byState[state] = { p50: quantile(ms, 0.5), p99: quantile(ms, 0.99) };
    }
    return {
      latency: {
        p50: quantile(lat.all, 0.5),
        p99: quantile(lat.all, 0.99),
        max: Math.max(...lat.all),
        events: lat.all.length,
      },
      byState,
      burst,
      floor: summarize(floorRun.latencies, floorRun.wallMs, floorRun.errors),
      samples: lat.all,
    };
  } finally {
    await receiver.close();
  }
}
