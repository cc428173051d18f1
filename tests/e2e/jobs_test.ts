// The asynchronous surface against real inference: POST /jobs with a webhook, signed events for
// every transition ending in done with Ollama's result, the job and its artifact, idempotency,
// listing, generate jobs and cancellation of queued and running jobs.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import {
  DETERMINISTIC,
  e2e,
  LONG,
  type Stack,
  startWebhookSink,
  waitFor,
  withStack,
} from "./stack.ts";

type Job = Record<string, unknown> & {
  job_id: string;
  state: string;
  result: Record<string, unknown> | null;
  artifacts: Array<Record<string, unknown>>;
};

async function job(s: Stack, id: string): Promise<Job> {
  const res = await s.call(`/jobs/${id}`);
  assert.equal(res.status, 200);
  return await res.json();
}

async function until(s: Stack, id: string, state: string, timeoutMs = 30_000): Promise<Job> {
  return await waitFor(`job ${id} to be ${state}`, async () => {
    const j = await job(s, id);
    return j.state === state && j;
  }, timeoutMs);
}

const SECRET_KEY = crypto.getRandomValues(new Uint8Array(24));
const SECRET = `whsec_${btoa(String.fromCharCode(...SECRET_KEY))}`;

function hmac(data: string, encoding: "hex" | "base64"): string {
  return createHmac("sha256", SECRET_KEY).update(data).digest(encoding);
}

Deno.test(
  "a /jobs job with a webhook runs on real Ollama and reports every state, signed",
  e2e,
  async (t) => {
    const sink = startWebhookSink();
    try {
      await withStack({
        env: {
          FOREMAN_WEBHOOK_HOSTS: sink.host,
          FOREMAN_WEBHOOK_SECRET: SECRET,
          FOREMAN_WEBHOOK_RETRY_BASE: "100ms",
        },
      }, async (s) => {
        const body = {
          model: "tiny-c",
          messages: [{ role: "user", content: "report back" }],
          options: DETERMINISTIC,
          state_webhook_url: sink.url,
          metadata: { ticket: 42 },
        };
        let id = "";

        await t.step("submit returns 202, a ULID and a Location", async () => {
          const res = await s.call("/jobs", { body, headers: { "idempotency-key": "e2e-1" } });
          assert.equal(res.status, 202);
          id = (await res.json()).job_id;
          assert.match(id, /^[0-9A-HJKMNP-TV-Z]{26}$/);
          assert.equal(res.headers.get("location"), `/jobs/${id}`);
        });

        await t.step(
          "the same idempotency key returns the same job; another body is a 409",
          async () => {
            const again = await s.call("/jobs", { body, headers: { "idempotency-key": "e2e-1" } });
            assert.ok(again.status === 200 || again.status === 202);
            assert.equal((await again.json()).job_id, id);
            const other = await s.call("/jobs", {
              body: { ...body, metadata: { ticket: 43 } },
              headers: { "idempotency-key": "e2e-1" },
            });
            assert.equal(other.status, 409);
            await other.body?.cancel();
          },
        );

        const done = await until(s, id, "done");

        await t.step("the job holds Ollama's own answer and a completion artifact", async () => {
          const expected = await (await s.direct("/api/chat", {
            model: body.model,
            messages: body.messages,
            options: body.options,
            stream: false,
          })).json();
          assert.equal(done.result!.done, true);
          assert.equal(
            (done.result!.message as { content: string }).content,
            expected.message.content,
          );
          assert.equal(done.attempt, 1);
          assert.equal(done.position, null);
          assert.deepEqual(done.metadata, { ticket: 42 });
          for (const k of ["created_at", "started_at", "finished_at"]) {
            assert.match(done[k] as string, /^\d{4}-\d\d-\d\dT.*Z$/, k);
          }
          const completion = done.artifacts.find((a) => a.name === "completion")!;
          assert.equal(completion.content_type, "application/json");
          assert.deepEqual(JSON.parse(completion.inline as string), done.result);

          const raw = await s.call(`/jobs/${id}/artifacts/completion`);
          assert.equal(raw.status, 200);
          const bytes = new Uint8Array(await raw.arrayBuffer());
          const sha = Array.from(
            new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)),
            (b) => b.toString(16).padStart(2, "0"),
          ).join("");
          assert.equal(sha, completion.sha256);
          assert.equal(bytes.length, completion.size);
          assert.equal(raw.headers.get("etag"), `"${sha}"`);
        });

        await t.step(
          "webhooks arrive for each transition, in order, signed both ways",
          async () => {
            const events = await waitFor("the done webhook", () => {
              const mine = sink.received.filter((r) => r.json.job_id === id);
              return mine.some((r) => r.json.state === "done") && mine;
            });
            const states = events.map((e) => e.json.state);
            assert.deepEqual(
              states.filter((x) => x !== "queued"),
              ["loading", "working", "done"].filter((x) => states.includes(x)),
            );
            assert.ok(states.includes("working") && states.at(-1) === "done", states.join(","));
            for (let i = 1; i < events.length; i++) {
              assert.equal(events[i]!.json.previous_state, events[i - 1]!.json.state);
            }
            for (const e of events) {
              assert.deepEqual(e.json.metadata, { ticket: 42 });
              assert.match(e.json.model as string, /^tiny-c(:latest)?$/);
              assert.equal(e.headers.get("x-foreman-signature"), `sha256=${hmac(e.body, "hex")}`);
              const wid = e.headers.get("webhook-id")!;
              const ts = e.headers.get("webhook-timestamp")!;
              assert.match(wid, /^msg_/);
              assert.ok(Math.abs(Number(ts) - Date.now() / 1000) < 300);
              const sigs = e.headers.get("webhook-signature")!.split(" ");
              assert.ok(sigs.includes(`v1,${hmac(`${wid}.${ts}.${e.body}`, "base64")}`));
            }
            const last = events.at(-1)!.json;
            assert.deepEqual(last.result, done.result);
            assert.ok(Array.isArray(last.artifacts));
          },
        );

        await t.step("the job is listed, newest first, and its webhook is delivered", async () => {
          const list = await (await s.call("/jobs?model=tiny-c&limit=10")).json();
          assert.equal(list.jobs[0].job_id, id);
          const j = await waitFor("the webhook to be marked delivered", async () => {
            const j = await job(s, id);
            const w = j.webhook as { pending: number; delivered: number } | null;
            return w !== null && w.pending === 0 && w.delivered > 0 && j;
          });
          assert.equal((j.webhook as { url: string }).url, sink.url);
        });

        await t.step("a webhook outside FOREMAN_WEBHOOK_HOSTS is refused", async () => {
          const res = await s.call("/jobs", {
            body: { ...body, state_webhook_url: "http://203.0.113.9/hook" },
          });
          assert.equal(res.status, 400);
          assert.match((await res.json()).error, /FOREMAN_WEBHOOK_HOSTS/);
        });
      });
    } finally {
      await sink.close();
    }
  },
);

Deno.test("generate jobs run and queued or running jobs can be cancelled", e2e, async (t) => {
  await withStack({}, async (s) => {
    await t.step("a generate job stores Ollama's generate answer", async () => {
      const payload = { model: "tiny-b", prompt: "jobs are", options: DETERMINISTIC };
      const res = await s.call("/jobs", { body: { endpoint: "generate", ...payload } });
      assert.equal(res.status, 202);
      const { job_id } = await res.json();
      const done = await until(s, job_id, "done");
      assert.equal(done.endpoint, "generate");
      const expected = await (await s.direct("/api/generate", { ...payload, stream: false }))
        .json();
      assert.equal(done.result!.response, expected.response);
    });

    await t.step("cancelling a queued and a running job", async () => {
      const submit = async (options: Record<string, unknown>) =>
        (await (await s.call("/jobs", {
          body: { model: "tiny-a", messages: [{ role: "user", content: "x" }], options },
        })).json()).job_id as string;
      const running = await submit(LONG);
      await until(s, running, "working");
      const queued = await submit(DETERMINISTIC);
      const q = await job(s, queued);
      assert.equal(q.state, "queued");
      assert.equal(q.position, 1);

      const cancelQueued = await s.call(`/jobs/${queued}`, { method: "DELETE" });
      assert.equal(cancelQueued.status, 200);
      assert.equal((await cancelQueued.json()).state, "cancelled");
      const cancelRunning = await s.call(`/jobs/${running}`, { method: "DELETE" });
      assert.equal(cancelRunning.status, 200);
      assert.equal((await cancelRunning.json()).state, "cancelled");

      const twice = await s.call(`/jobs/${running}`, { method: "DELETE" });
      assert.equal(twice.status, 409);
      await twice.body?.cancel();
      const unknown = await s.call("/jobs/01J0000000000000000000000Z", { method: "DELETE" });
      assert.equal(unknown.status, 404);
      await unknown.body?.cancel();

      // The worker is free again: a new job runs to the end.
      const next = await submit(DETERMINISTIC);
      const done = await until(s, next, "done");
      assert.equal(done.result!.done, true);
    });
  });
});
