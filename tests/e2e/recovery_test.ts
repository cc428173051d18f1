// A real Ollama dies in the middle of a job (SIGKILL, runners included) and comes back: foreman
// keeps accepting work, reports itself degraded, retries the job and finishes it, and warms the
// embedder again once the target is back.

import assert from "node:assert/strict";
import {
  DETERMINISTIC,
  e2e,
  LONG,
  ollamaResident,
  type Stack,
  waitFor,
  withStack,
} from "./stack.ts";

type Job = { job_id: string; state: string; attempt: number; result: Record<string, unknown> };

async function submit(s: Stack, body: Record<string, unknown>): Promise<string> {
  const res = await s.call("/jobs", { body });
  const text = await res.text();
  assert.equal(res.status, 202, text);
  return JSON.parse(text).job_id;
}

async function job(s: Stack, id: string): Promise<Job> {
  return await (await s.call(`/jobs/${id}`)).json();
}

async function health(s: Stack) {
  return await (await fetch(`${s.foreman.url}/healthz`)).json();
}

Deno.test(
  "a job whose Ollama is killed mid-inference is retried and completes after restart",
  e2e,
  async () => {
    await withStack({}, async (s) => {
      const long = await submit(s, {
        model: "tiny-a",
        messages: [{ role: "user", content: "survive this" }],
        options: LONG,
      });
      await waitFor("the job to run", async () => (await job(s, long)).state === "working");
      await s.ollama.kill();

      await waitFor("foreman to see the target gone", async () => (await health(s)).degraded);
      const back = await waitFor("the job to go back to the queue", async () => {
        const j = await job(s, long);
        return j.state === "queued" && j;
      });
      assert.notEqual(back.state, "failed");

      // Work is still accepted while the target is down (the inventory is the last one seen).
      const late = await submit(s, {
        model: "tiny-c",
        messages: [{ role: "user", content: "submitted while down" }],
        options: DETERMINISTIC,
      });
      // It may cycle queued → loading → queued while the worker keeps finding the target down.
      assert.match((await job(s, late)).state, /^(queued|loading)$/);

      await s.ollama.restart();
      const done = await waitFor("the retried job to finish", async () => {
        const j = await job(s, long);
        assert.ok(j.state !== "failed", `job failed: ${JSON.stringify(j)}`);
        return j.state === "done" && j;
      }, 90_000);
      assert.equal(done.result.done, true);
      assert.equal(done.result.eval_count, LONG.num_predict);
      assert.equal(done.attempt, 1, "a lost connection does not burn an attempt");

      const lateDone = await waitFor("the job submitted while down to finish", async () => {
        const j = await job(s, late);
        return j.state === "done" && j;
      }, 60_000);
      assert.equal(lateDone.result.done, true);

      await waitFor("foreman to report healthy", async () => !(await health(s)).degraded);
      await waitFor(
        "the embedder to be warm again",
        async () => (await ollamaResident(s.ollama)).includes("tiny-embed"),
      );
    });
  },
);
