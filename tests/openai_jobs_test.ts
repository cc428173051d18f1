// /v1 jobs in foreman's queue, through a real foreman process in front of the simulator: residency
// stays pinned whatever mix of /v1 and native jobs ran, drain-by-model groups both surfaces, an
// async /v1 job survives a crash, and /jobs takes OpenAI-shaped bodies like native ones.

import assert from "node:assert/strict";
import { type ForemanProcess, waitFor } from "../harness/foreman.ts";
import { startReceiver } from "../harness/receiver.ts";
import { OllamaSim } from "../sim/mod.ts";
import { REPIN_IDLE } from "../src/worker/worker.ts";
import { startStack } from "./support/stack.ts";

const user = [{ role: "user", content: "hello" }];
/** What `sent` shows for the worker's re-pin: a load that pins the model for ever. */
const REPIN = "load keep_alive -1";

function post(fm: ForemanProcess, path: string, body: unknown, headers = {}): Promise<Response> {
  return fetch(fm.url + path, {
    method: "POST",
    headers: fm.headers(headers),
    body: JSON.stringify(body),
  });
}

/** POSTs and reads the whole answer, so the sync job has finished when it resolves. */
async function run(fm: ForemanProcess, path: string, body: unknown): Promise<number> {
  const res = await post(fm, path, body);
  await res.arrayBuffer();
  return res.status;
}

async function getJob(fm: ForemanProcess, id: string): Promise<Record<string, unknown>> {
  return await (await fetch(`${fm.url}/jobs/${id}`, { headers: fm.headers() })).json();
}

async function queue(fm: ForemanProcess): Promise<{ queued: number; running: number }> {
  return (await (await fetch(`${fm.url}/healthz`, { headers: fm.headers() })).json()).queue;
}

/** Years until the model's expires_at at the target (/api/ps), or -1 when it is not loaded. */
async function pinnedYears(sim: OllamaSim, model: string): Promise<number> {
  const ps = await (await fetch(`${sim.url}/api/ps`)).json();
  const row = ps.models.find((m: { name: string }) => m.name === model);
  return row ? (Date.parse(row.expires_at) - Date.now()) / (365 * 86_400_000) : -1;
}

/** What foreman sent to the target's generation routes, in order: loads, native and /v1 jobs. */
function sent(sim: OllamaSim): string[] {
  return sim.requests.flatMap((r) => {
    if (r.path.startsWith("/v1/")) return ["v1"];
    if (r.path !== "/api/chat" && r.path !== "/api/generate") return [];
    const b = r.body as { messages?: unknown[]; prompt?: string; keep_alive?: unknown };
    const empty = r.path === "/api/chat" ? !b.messages?.length : !b.prompt;
    return [empty ? `load keep_alive ${b.keep_alive}` : "native"];
  });
}

Deno.test("after any mix of /v1 and native jobs the worker model is pinned as configured, and no re-pin reloads it", async () => {
  const { sim, fm, close } = await startStack();
  try {
    const pinned = (what: string) =>
      waitFor(async () => await pinnedYears(sim, "tiny-a:latest") > 100, { what });
    assert.equal(await run(fm, "/v1/chat/completions", { model: "tiny-a", messages: user }), 200);
    await pinned("tiny-a pinned again after a /v1 chat");

    // A native job with a runner option reloads the model; the /v1 job after it reloads it again
    // with the default options, and so with the target's default expiry.
    const numCtx = { model: "tiny-a", messages: user, options: { num_ctx: 256 }, stream: false };
    assert.equal(await run(fm, "/api/chat", numCtx), 200);
    assert.equal(await run(fm, "/v1/chat/completions", { model: "tiny-a", messages: user }), 200);
    await pinned("tiny-a pinned again after the reload by a /v1 job");

    const mixed = await Promise.all([
      run(fm, "/v1/completions", { model: "tiny-a", prompt: "x", max_tokens: 2 }),
      run(fm, "/api/generate", { model: "tiny-a", prompt: "x", stream: false }),
      run(fm, "/v1/chat/completions", { model: "tiny-a", messages: user, stream: true }),
      run(fm, "/jobs", { endpoint: "openai.chat", model: "tiny-a", messages: user }),
    ]);
    assert.deepEqual(mixed, [200, 200, 200, 202]);
    await waitFor(async () => {
      const q = await queue(fm);
      return q.queued + q.running === 0;
    });
    await pinned("tiny-a pinned after the mix");
    assert.deepEqual(
      sim.loads(),
      ["tiny-a:latest", "tiny-a:latest", "tiny-a:latest"],
      "the first load, the num_ctx reload and the /v1 reload: the re-pins loaded nothing",
    );
    assert.equal(sim.maxConcurrent(), 1);
  } finally {
    await close();
  }
});

Deno.test("the worker pins again once idle: not between queued or back-to-back /v1 jobs, not after a native job", async () => {
  const { sim, fm, close } = await startStack({ sim: { tokenMs: 10 } });
  try {
    const blocker = run(fm, "/api/chat", {
      model: "tiny-a",
      messages: user,
      stream: false,
      options: { num_predict: 100 },
    });
    await waitFor(async () => (await queue(fm)).running === 1);
    const behind = [
      run(fm, "/v1/chat/completions", { model: "tiny-a", messages: user }),
      run(fm, "/v1/completions", { model: "tiny-a", prompt: "x" }),
    ];
    await waitFor(async () => (await queue(fm)).queued === 2);
    behind.push(run(fm, "/api/generate", { model: "tiny-a", prompt: "x", stream: false }));
    await waitFor(async () => (await queue(fm)).queued === 3);
    assert.deepEqual(await Promise.all([blocker, ...behind]), [200, 200, 200, 200]);
    // The native job last in line carried foreman's keep_alive: nothing to pin again.
    assert.ok(await pinnedYears(sim, "tiny-a:latest") > 100);

    // A client that sends its next request as soon as it has the answer: one re-pin, at the end.
    const sentAt: number[] = [];
    const answeredAt: number[] = [];
    for (let i = 0; i < 3; i++) {
      sentAt.push(performance.now());
      assert.equal(await run(fm, "/v1/chat/completions", { model: "tiny-a", messages: user }), 200);
      answeredAt.push(performance.now());
    }
    await waitFor(async () => await pinnedYears(sim, "tiny-a:latest") > 100);
    await waitFor(() => sent(sim).at(-1) === REPIN, { what: "the re-pin" });
    const seen = sent(sim);
    const expected = [REPIN, "native", "v1", "v1", "native", "v1"];
    for (let i = 1; i < 3; i++) {
      // Between two of these jobs the worker was idle for less than from the first request to the
      // second answer. Where a loaded machine stretched that to REPIN_IDLE, a re-pin is allowed
      // (less 10 ms: the worker's clock runs in another process and counts whole milliseconds).
      const idleAtMost = answeredAt[i]! - sentAt[i - 1]!;
      if (idleAtMost > REPIN_IDLE - 10 && seen[expected.length] === REPIN) expected.push(REPIN);
      expected.push("v1");
    }
    expected.push(REPIN);
    assert.deepEqual(seen, expected);
  } finally {
    await close();
  }
});

Deno.test("drain-by-model runs /v1 and native jobs of one model together: one load each, swaps = models - 1", async () => {
  const { sim, fm, close } = await startStack({ sim: { tokenMs: 20 } });
  try {
    const blocker = run(fm, "/api/chat", {
      model: "tiny-a",
      messages: user,
      stream: false,
      options: { num_predict: 50 },
    });
    await waitFor(async () => (await queue(fm)).running === 1);
    const backlog: [string, Record<string, unknown>][] = [
      ["/v1/chat/completions", { model: "tiny-b", messages: user, max_tokens: 2 }],
      ["/api/chat", { model: "tiny-c", messages: user, stream: false }],
      ["/jobs", { endpoint: "openai.completions", model: "tiny-a", prompt: "x", max_tokens: 2 }],
      ["/api/generate", { model: "tiny-b", prompt: "x", stream: false }],
      ["/v1/completions", { model: "tiny-c", prompt: "x", max_tokens: 2, stream: true }],
      ["/v1/chat/completions", { model: "tiny-a", messages: user, max_tokens: 2 }],
      ["/jobs", { endpoint: "openai.chat", model: "tiny-b", messages: user, max_tokens: 2 }],
      ["/api/chat", { model: "tiny-c", messages: user, stream: false }],
    ];
    const answers: Promise<number>[] = [];
    for (const [i, [path, body]] of backlog.entries()) {
      answers.push(run(fm, path, body));
      await waitFor(async () => (await queue(fm)).queued === i + 1);
    }
    assert.equal(await blocker, 200);
    assert.ok((await Promise.all(answers)).every((s) => s === 200 || s === 202));
    await waitFor(async () => {
      const q = await queue(fm);
      return q.queued + q.running === 0;
    });
    const list = await (await fetch(`${fm.url}/jobs?limit=20`, { headers: fm.headers() })).json();
    const order = (list.jobs as { model: string; started_at: string }[])
      .sort((x, y) => x.started_at.localeCompare(y.started_at))
      .map((j) => j.model.slice(0, 6));
    assert.deepEqual(order, [
      "tiny-a",
      "tiny-a",
      "tiny-a",
      "tiny-b",
      "tiny-b",
      "tiny-b",
      "tiny-c",
      "tiny-c",
      "tiny-c",
    ]);
    assert.deepEqual(sim.loads(), ["tiny-a:latest", "tiny-b:latest", "tiny-c:latest"]);
    const metrics = await (await fetch(`${fm.url}/metrics`, { headers: fm.headers() })).text();
    assert.match(metrics, /^foreman_model_swaps_total 2$/m);
    assert.equal(sim.maxConcurrent(), 1);
  } finally {
    await close();
  }
});

Deno.test("an async /v1 job cut by a crash of foreman runs again after the restart and ends done with the OpenAI answer", async () => {
  const hook = await startReceiver();
  const { sim, fm, close } = await startStack({
    sim: { tokenMs: 20 },
    args: ["--webhook-hosts", `127.0.0.1:${hook.port}`],
  });
  try {
    const res = await post(fm, "/jobs", {
      endpoint: "openai.chat",
      model: "tiny-a",
      messages: user,
      max_tokens: 60,
      state_webhook_url: `${hook.url}/h`,
    });
    assert.equal(res.status, 202);
    const { job_id: id } = await res.json();
    await waitFor(async () => (await getJob(fm, id)).state === "working");
    await fm.kill();
    await fm.restart();
    const job = await waitFor(async () => {
      const j = await getJob(fm, id);
      return j.state === "done" && j;
    }, { timeout: 20_000, what: "the job to finish after the restart" });
    const artifacts = job.artifacts as { name: string; content_type: string; inline: string }[];
    assert.deepEqual(artifacts.map((a) => [a.name, a.content_type]), [
      ["completion", "application/json"],
    ]);
    const answer = JSON.parse(artifacts[0]!.inline);
    assert.equal(answer.object, "chat.completion");
    assert.equal(answer.choices[0].message.content.split(" ").length, 60);
    assert.deepEqual(job.result, answer);
    await waitFor(() => hook.delivered().some((e) => e.state === "done"));
    const states = hook.delivered().map((e) => e.state);
    assert.equal(states.at(-1), "done");
    assert.equal(
      sim.requests.filter((r) => r.path === "/v1/chat/completions").length,
      2,
      "sent again after the restart",
    );
  } finally {
    await close();
    await hook.close();
  }
});

Deno.test("/jobs takes OpenAI-shaped bodies with idempotency, webhooks, artifacts and cancel as for native jobs", async () => {
  const hook = await startReceiver();
  const { fm, close } = await startStack({
    sim: { tokenMs: 10 },
    args: ["--webhook-hosts", `127.0.0.1:${hook.port}`],
  });
  try {
    const body = {
      endpoint: "openai.completions",
      model: "tiny-b",
      prompt: "once",
      max_tokens: 3,
      stream: true, // ignored: a job's answer is stored whole
      state_webhook_url: `${hook.url}/h`,
    };
    const key = { "idempotency-key": "v1-once" };
    const first = await post(fm, "/jobs", body, key);
    assert.equal(first.status, 202);
    const { job_id: id } = await first.json();
    const again = await post(fm, "/jobs", body, key);
    assert.equal(again.headers.get("idempotent-replayed"), "true");
    assert.equal((await again.json()).job_id, id);
    const other = await post(fm, "/jobs", { ...body, prompt: "twice" }, key);
    assert.equal(other.status, 409);
    await other.body?.cancel();

    await waitFor(async () => (await getJob(fm, id)).state === "done");
    const job = await getJob(fm, id);
    assert.equal(job.endpoint, "openai.completions");
    const art = await fetch(`${fm.url}/jobs/${id}/artifacts/completion`, { headers: fm.headers() });
    assert.equal(art.headers.get("content-type"), "application/json");
    const answer = await art.json();
    assert.equal(answer.object, "text_completion");
    assert.equal(answer.choices[0].text, "w1 w2 w3");
    await waitFor(() => hook.delivered().length === 4);
    assert.deepEqual(hook.delivered().map((e) => e.state), [
      "queued",
      "loading",
      "working",
      "done",
    ]);
    const done = hook.delivered()[3]!;
    assert.deepEqual(JSON.parse((done.artifacts as { inline: string }[])[0]!.inline), answer);

    // A queued /v1 job is cancelled like any other.
    const blocker = run(fm, "/api/chat", {
      model: "tiny-a",
      messages: user,
      stream: false,
      options: { num_predict: 100 },
    });
    await waitFor(async () => (await queue(fm)).running === 1);
    const queued = await (await post(fm, "/jobs", {
      endpoint: "openai.chat",
      model: "tiny-a",
      messages: user,
    })).json();
    const cancelled = await fetch(`${fm.url}/jobs/${queued.job_id}`, {
      method: "DELETE",
      headers: fm.headers(),
    });
    assert.equal((await cancelled.json()).state, "cancelled");
    assert.equal(await blocker, 200);

    // /jobs keeps Ollama's error shape, whatever the body's dialect.
    const refusals: [Record<string, unknown>, string][] = [
      [
        { endpoint: "openai.chat", model: "tiny-a" },
        "messages is required: an array of message objects",
      ],
      [
        { endpoint: "openai.completions", model: "tiny-a", prompt: "x", max_tokens: "3" },
        "invalid request body: max_tokens must be an integer",
      ],
      [
        { endpoint: "openai.responses", model: "tiny-a", input: "x" },
        'endpoint must be one of "chat", "generate", "openai.chat", "openai.completions"',
      ],
    ];
    for (const [refused, error] of refusals) {
      const res = await post(fm, "/jobs", refused);
      assert.equal(res.status, 400);
      assert.deepEqual(await res.json(), { error });
    }
  } finally {
    await close();
    await hook.close();
  }
});
