// Drain-by-model and two-slot residency, judged by the real Ollama's own evidence: how many times
// it started a runner (its log), what its /api/ps showed while the queue drained, and the
// load_duration it reported. Embeddings answer at once while a chat holds the worker slot.

import assert from "node:assert/strict";
import {
  DETERMINISTIC,
  e2e,
  LONG,
  ollamaLoads,
  ollamaResident,
  type Stack,
  waitFor,
  watchResidency,
  withStack,
} from "./stack.ts";

type Job = Record<string, unknown> & {
  job_id: string;
  state: string;
  model: string;
  started_at: string | null;
  result: Record<string, unknown> | null;
};

async function submit(s: Stack, body: Record<string, unknown>): Promise<string> {
  const res = await s.call("/jobs", { body });
  const text = await res.text();
  assert.equal(res.status, 202, text);
  return JSON.parse(text).job_id;
}

async function job(s: Stack, id: string): Promise<Job> {
  const res = await s.call(`/jobs/${id}`);
  assert.equal(res.status, 200);
  return await res.json();
}

function chat(model: string, content: string, options: Record<string, unknown>) {
  return { model, messages: [{ role: "user", content }], options };
}

/** foreman stores the canonical name ("tiny-a:latest"); compare without the default tag. */
function bare(model: string): string {
  return model.replace(/:latest$/, "");
}

/** Consecutive duplicates removed: ["a","a","b","a"] → ["a","b","a"]. */
function runs<T>(xs: T[]): T[] {
  return xs.filter((x, i) => i === 0 || x !== xs[i - 1]);
}

Deno.test(
  "an interleaved backlog drains with one load per model, the embedder resident",
  e2e,
  async (t) => {
    await withStack({}, async (s) => {
      await waitFor(
        "foreman to warm the embedder",
        async () => (await ollamaResident(s.ollama)).includes("tiny-embed"),
      );
      const loadsBefore = ollamaLoads(s.ollama);
      const watch = watchResidency(s.ollama);

      // A long job holds the worker on tiny-a while the backlog builds up behind it.
      const blocker = await submit(s, chat("tiny-a", "hold the worker", LONG));
      await waitFor("the blocker to run", async () => (await job(s, blocker)).state === "working");
      const ids: string[] = [];
      for (let round = 0; round < 3; round++) {
        for (const model of ["tiny-b", "tiny-c", "tiny-a"]) {
          ids.push(await submit(s, chat(model, `round ${round}`, DETERMINISTIC)));
        }
      }
      const jobs = await waitFor("the backlog to drain", async () => {
        const all = await Promise.all([blocker, ...ids].map((id) => job(s, id)));
        return all.every((j) => j.state === "done") && all;
      }, 60_000);
      const samples = await watch.stop();

      await t.step("jobs ran grouped by model, the resident model's first", () => {
        const order = [...jobs].sort((x, y) => x.started_at!.localeCompare(y.started_at!));
        assert.deepEqual(runs(order.map((j) => bare(j.model))), ["tiny-a", "tiny-b", "tiny-c"]);
      });

      await t.step("Ollama loaded each worker model once", () => {
        assert.equal(ollamaLoads(s.ollama) - loadsBefore, 3);
        const cold = jobs.filter((j) => (j.result!.load_duration as number) > 50e6);
        assert.ok(cold.length <= 3, `${cold.length} jobs paid a cold load`);
        for (const j of jobs) assert.equal(j.result!.done, true);
      });

      await t.step("Ollama's /api/ps always held the embedder and saw a, b, c in turn", () => {
        assert.ok(samples.length > 10, `${samples.length} samples`);
        for (const sample of samples) {
          assert.ok(sample.includes("tiny-embed"), `embedder evicted: ${sample}`);
          assert.ok(sample.length <= 2);
        }
        const workers = samples.map((x) => x.filter((m) => m !== "tiny-embed")[0]).filter(Boolean);
        assert.deepEqual(runs(workers), ["tiny-a", "tiny-b", "tiny-c"]);
      });

      await t.step("the same backlog sent straight to Ollama costs a load per switch", async () => {
        // What foreman improves on: Ollama runs requests in arrival order and swaps every time.
        const before = ollamaLoads(s.ollama);
        for (let round = 0; round < 3; round++) {
          for (const model of ["tiny-b", "tiny-c", "tiny-a"]) {
            const res = await s.direct("/api/chat", {
              ...chat(model, `round ${round}`, DETERMINISTIC),
              stream: false,
            });
            assert.equal((await res.json()).done, true);
          }
        }
        const direct = ollamaLoads(s.ollama) - before;
        assert.ok(direct >= 8, `direct FIFO loaded ${direct} times`);
      });
    });
  },
);

Deno.test("embeddings answer while a chat job runs, from the resident embedder", e2e, async () => {
  await withStack({}, async (s) => {
    await waitFor(
      "foreman to warm the embedder",
      async () => (await ollamaResident(s.ollama)).includes("tiny-embed"),
    );
    const id = await submit(s, chat("tiny-b", "a long answer please", LONG));
    await waitFor("the chat to run", async () => (await job(s, id)).state === "working");

    const started = Date.now();
    const res = await s.call("/api/embed", { body: { model: "tiny-embed", input: ["x", "y"] } });
    assert.equal(res.status, 200);
    const emb = await res.json();
    const took = Date.now() - started;
    assert.equal(emb.embeddings.length, 2);
    assert.ok(emb.load_duration < 50e6, `embedder was cold: load_duration ${emb.load_duration}`);
    assert.equal(
      (await job(s, id)).state,
      "working",
      `chat finished first (embed took ${took} ms)`,
    );
    assert.deepEqual(await ollamaResident(s.ollama), ["tiny-b", "tiny-embed"]);

    const legacy = await (await s.call("/api/embeddings", {
      body: { model: "tiny-embed", prompt: "x" },
    })).json();
    assert.equal(legacy.embedding.length, 64);

    const done = await waitFor("the chat to finish", async () => {
      const j = await job(s, id);
      return j.state === "done" && j;
    }, 60_000);
    assert.equal(done.result!.done, true);
    assert.equal(done.result!.eval_count, LONG.num_predict);
  });
});
