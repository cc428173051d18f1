// Drain-by-model through a real foreman process: the simulator's own load log is the evidence.

import assert from "node:assert/strict";
import { waitFor } from "../harness/foreman.ts";
import { startStack } from "./support/stack.ts";

const MODELS = ["tiny-a:latest", "tiny-b:latest", "tiny-c:latest"];

/** Model changes a worker that runs `order` as given would make (plain FIFO). */
function fifoSwaps(order: string[]): number {
  let swaps = 0;
  for (let i = 1; i < order.length; i++) if (order[i] !== order[i - 1]) swaps++;
  return swaps;
}

Deno.test("an interleaved backlog over three models is served with two swaps, FIFO would need one per job", async () => {
  const { sim, fm, close } = await startStack({
    sim: { loadMs: 30, tokenMs: 2, maxLoaded: 2 },
    args: ["--embed-model", "embed-e"],
  });
  try {
    const health = async () =>
      (await (await fetch(fm.url + "/healthz", { headers: fm.headers() })).json()).queue;
    // A long job for tiny-a holds the worker while the backlog builds up behind it.
    const blocker = fetch(fm.url + "/api/generate", {
      method: "POST",
      headers: fm.headers(),
      body: JSON.stringify({
        model: "tiny-a",
        prompt: "hold",
        stream: false,
        options: { num_predict: 300 },
      }),
    }).then((r) => r.json());
    await waitFor(async () => (await health()).running === 1);
    const order: string[] = [];
    const answers: Promise<{ model: string; done: boolean }>[] = [];
    for (let i = 0; i < 9; i++) {
      const model = MODELS[(i + 1) % 3]; // b c a b c a b c a
      order.push(model!);
      answers.push(
        fetch(fm.url + "/api/chat", {
          method: "POST",
          headers: fm.headers(),
          body: JSON.stringify({
            model,
            stream: false,
            messages: [{ role: "user", content: `${i}` }],
          }),
        }).then((r) => r.json()),
      );
      await waitFor(async () => (await health()).queued === i + 1, { what: `job ${i} queued` });
    }
    await blocker;
    const results = await Promise.all(answers);
    assert.ok(results.every((r) => r.done === true));

    const workerLoads = sim.loads().filter((m) => m !== "embed-e:latest");
    const swaps = workerLoads.length - 1;
    const fifo = fifoSwaps(["tiny-a:latest", ...order]);
    console.log(
      `drain-by-model: ${swaps} swaps (${workerLoads.join(" → ")}); plain FIFO: ${fifo} swaps`,
    );
    assert.equal(swaps, 2);
    assert.equal(fifo, 9);
    assert.ok(sim.resident().includes("embed-e:latest"), "the embedder stayed resident");
    assert.ok(!sim.unloads().includes("embed-e:latest"), "the embedder was never unloaded");
    const metrics = await (await fetch(fm.url + "/metrics", { headers: fm.headers() })).text();
    assert.match(metrics, /^foreman_model_swaps_total 2$/m);
  } finally {
    await close();
  }
});
