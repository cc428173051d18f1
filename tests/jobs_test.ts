// deno-lint-ignore-file no-explicit-any -- job JSON is checked field by field below
// The async surface through a real foreman process, the simulator and a real webhook receiver.

import assert from "node:assert/strict";
import { Webhook } from "standardwebhooks";
import { type ForemanProcess, startForeman, waitFor } from "../harness/foreman.ts";
import { OllamaSim } from "../sim/mod.ts";
import { type Receiver, startReceiver } from "../harness/receiver.ts";
import { type SimOptions, type Stack, startStack } from "./support/stack.ts";

const SECRET = "whsec_" + btoa("foreman-test-secret-0123456789ab");

/** The stack and a webhook receiver foreman delivers to, signing with SECRET. */
async function stack(
  options: { statuses?: number[]; args?: string[]; sim?: SimOptions } = {},
): Promise<Stack & { hook: Receiver }> {
  const hook = await startReceiver({ statuses: options.statuses });
  const s = await startStack({
    sim: { tokenMs: 2, ...options.sim },
    args: [
      "--webhook-hosts",
      `127.0.0.1:${hook.port}`,
      "--webhook-retry-base",
      "100ms",
      ...(options.args ?? []),
    ],
    env: { FOREMAN_WEBHOOK_SECRET: SECRET },
  }).catch(async (err) => {
    await hook.close();
    throw err;
  });
  const close = async () => {
    await s.close();
    await hook.close();
  };
  return { sim: s.sim, fm: s.fm, hook, close, [Symbol.asyncDispose]: close };
}

async function submit(
  fm: ForemanProcess,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<Response> {
  return await fetch(fm.url + "/jobs", {
    method: "POST",
    headers: fm.headers(headers),
    body: JSON.stringify(body),
  });
}

async function getJob(fm: ForemanProcess, id: string) {
  return await (await fetch(`${fm.url}/jobs/${id}`, { headers: fm.headers() })).json();
}

function chat(model = "tiny-a", extra: Record<string, unknown> = {}) {
  return {
    model,
    messages: [{ role: "user", content: "hi" }],
    options: { num_predict: 4 },
    ...extra,
  };
}

Deno.test("a job's full lifecycle reaches the webhook in order, signed, with metadata", async () => {
  const s = await stack();
  try {
    const res = await submit(
      s.fm,
      chat("tiny-a", {
        state_webhook_url: `${s.hook.url}/hook`,
        metadata: { ticket: 42 },
      }),
    );
    assert.equal(res.status, 202);
    const { job_id } = await res.json();
    assert.match(job_id, /^[0-9A-HJKMNP-TV-Z]{26}$/);
    assert.equal(res.headers.get("location"), `/jobs/${job_id}`);

    await waitFor(() => s.hook.delivered().length === 4, { what: "four events" });
    const events = s.hook.delivered();
    assert.deepEqual(events.map((e) => e.state), ["queued", "loading", "working", "done"]);
    assert.deepEqual(events.map((e) => e.previous_state), [null, "queued", "loading", "working"]);
    for (const e of events) {
      assert.equal(e.job_id, job_id);
      assert.deepEqual(e.metadata, { ticket: 42 });
      assert.equal(e.model, "tiny-a:latest");
    }
    const done = events[3] as Record<string, any>;
    assert.equal(done.result.done, true);
    assert.equal(done.artifacts[0].name, "completion");
    assert.equal(done.artifacts[0].content_type, "application/json");
    assert.deepEqual(JSON.parse(done.artifacts[0].inline), done.result);

    const wh = new Webhook(SECRET);
    for (const r of s.hook.received) {
      const headers = Object.fromEntries(r.headers);
      assert.deepEqual(wh.verify(r.body, headers), JSON.parse(r.body));
      assert.match(r.headers.get("x-foreman-signature")!, /^sha256=[0-9a-f]{64}$/);
    }

    const job = await getJob(s.fm, job_id);
    assert.equal(job.state, "done");
    assert.equal(job.attempt, 1);
    assert.equal(job.position, null);
    assert.equal(job.result.done, true);
    assert.deepEqual(job.webhook, {
      url: `${s.hook.url}/hook`,
      pending: 0,
      delivered: 4,
      dead: 0,
      last_error: null,
    });
    assert.ok(job.created_at <= job.started_at && job.started_at <= job.finished_at);
  } finally {
    await s.close();
  }
});

Deno.test("artifacts are inline up to the limit and by URL beyond it, with a strong ETag", async () => {
  const s = await stack({ args: ["--inline-limit", "600"] });
  try {
    const small =
      (await (await submit(s.fm, chat("tiny-a", { options: { num_predict: 1 } }))).json()).job_id;
    const large =
      (await (await submit(s.fm, chat("tiny-a", { options: { num_predict: 200 } }))).json()).job_id;
    const jobs = await waitFor(async () => {
      const all = [await getJob(s.fm, small), await getJob(s.fm, large)];
      return all.every((j) => j.state === "done") && all;
    });
    const [a, b] = jobs.map((j: any) => j.artifacts[0]);
    assert.ok(
      a.size <= 600 && typeof a.inline === "string",
      `small artifact ${a.size} bytes inline`,
    );
    assert.ok(jobs[0].result !== null);
    assert.ok(b.size > 600 && b.inline === null, `large artifact ${b.size} bytes by URL`);
    assert.equal(jobs[1].result, null);
    assert.equal(b.url, `${s.fm.url}/jobs/${large}/artifacts/completion`);

    const res = await fetch(b.url, { headers: s.fm.headers() });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/json");
    assert.equal(Number(res.headers.get("content-length")), b.size);
    assert.equal(res.headers.get("etag"), `"${b.sha256}"`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    const digest = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)))
      .map((x) => x.toString(16).padStart(2, "0")).join("");
    assert.equal(digest, b.sha256);
    const again = await fetch(b.url, {
      headers: s.fm.headers({ "if-none-match": `"${b.sha256}"` }),
    });
    assert.equal(again.status, 304);
    await again.body?.cancel();

    for (const name of ["nope", "..%2F..%2Fetc%2Fpasswd", "%2e%2e", "completion%00"]) {
      const r = await fetch(`${s.fm.url}/jobs/${large}/artifacts/${name}`, {
        headers: s.fm.headers(),
      });
      assert.equal(r.status, 404, name);
      // "%2e%2e" is normalised away by the URL parser before it is sent: then there is no route.
      assert.match((await r.json()).error, /has no artifact|no route/);
    }
  } finally {
    await s.close();
  }
});

Deno.test("a receiver answering 500 then 200 gets the event again and the job is unaffected", async () => {
  const s = await stack({ statuses: [500, 200] });
  try {
    const { job_id } =
      await (await submit(s.fm, chat("tiny-a", { state_webhook_url: `${s.hook.url}/h` }))).json();
    await waitFor(async () => (await getJob(s.fm, job_id)).webhook?.delivered === 4, {
      what: "all events",
    });
    const queued = s.hook.received.filter((r) => r.json.state === "queued");
    assert.equal(queued.length, 2, "the first event was retried");
    assert.equal(queued[0]!.headers.get("webhook-id"), queued[1]!.headers.get("webhook-id"));
    assert.equal((await getJob(s.fm, job_id)).state, "done");
  } finally {
    await s.close();
  }
});

Deno.test("an event survives a kill -9 between the state change and its delivery", async () => {
  const hookPort = await startReceiver({ statuses: [503] });
  const sim = await OllamaSim.start({ loadMs: 10, tokenMs: 2 });
  // Long retry so the first delivery fails and the next one is still pending when foreman dies.
  const fm = await startForeman({
    ollamaUrl: sim.url,
    args: [
      "--poll-interval",
      "1s",
      "--webhook-hosts",
      `127.0.0.1:${hookPort.port}`,
      "--webhook-retry-base",
      "1s",
    ],
    env: { FOREMAN_WEBHOOK_SECRET: SECRET },
  });
  let hook: Receiver | undefined;
  try {
    const { job_id } =
      await (await submit(fm, chat("tiny-a", { state_webhook_url: `${hookPort.url}/h` }))).json();
    await waitFor(async () => (await getJob(fm, job_id)).state === "done");
    const firstId = hookPort.received[0]!.headers.get("webhook-id");
    await fm.kill();
    const port = hookPort.port;
    await hookPort.close();
    hook = await startReceiver({ port });
    await fm.restart();
    await waitFor(() => hook!.delivered().length === 4, {
      timeout: 20_000,
      what: "events after restart",
    });
    assert.deepEqual(hook.delivered().map((e) => e.state), [
      "queued",
      "loading",
      "working",
      "done",
    ]);
    assert.equal(
      hook.received[0]!.headers.get("webhook-id"),
      firstId,
      "same webhook-id after the crash",
    );
  } finally {
    await fm.stop();
    await hook?.close();
    await sim.close();
  }
});

Deno.test("kill -9 mid-job: after restart the job completes and its done event arrives", async () => {
  const s = await stack({ sim: { tokenMs: 20 } });
  try {
    const { job_id } = await (await submit(
      s.fm,
      chat("tiny-a", {
        state_webhook_url: `${s.hook.url}/h`,
        options: { num_predict: 200 },
      }),
    )).json();
    await waitFor(async () => (await getJob(s.fm, job_id)).state === "working");
    await s.fm.kill();
    await s.fm.restart();
    await waitFor(() => s.hook.delivered().some((e) => e.state === "done"), {
      timeout: 30_000,
      what: "done",
    });
    const states = s.hook.delivered().map((e) => e.state);
    assert.deepEqual(states.slice(-4), ["queued", "loading", "working", "done"], states.join(","));
    const job = await getJob(s.fm, job_id);
    assert.equal(job.state, "done");
    assert.equal(job.attempt, 2);
  } finally {
    await s.close();
  }
});

Deno.test("cancelling a queued job and a running job ends both cancelled; a finished one is 409", async () => {
  const s = await stack({ sim: { tokenMs: 20 } });
  try {
    const running = (await (await submit(
      s.fm,
      chat("tiny-a", {
        state_webhook_url: `${s.hook.url}/h`,
        options: { num_predict: 500 },
      }),
    )).json()).job_id;
    const queued = (await (await submit(s.fm, chat("tiny-b"))).json()).job_id;
    await waitFor(async () => (await getJob(s.fm, running)).state === "working");
    assert.equal((await getJob(s.fm, queued)).position, 1);

    const delQueued = await fetch(`${s.fm.url}/jobs/${queued}`, {
      method: "DELETE",
      headers: s.fm.headers(),
    });
    assert.equal(delQueued.status, 200);
    assert.equal((await delQueued.json()).state, "cancelled");
    const delRunning = await fetch(`${s.fm.url}/jobs/${running}`, {
      method: "DELETE",
      headers: s.fm.headers(),
    });
    assert.equal(delRunning.status, 200);
    assert.equal((await delRunning.json()).state, "cancelled");
    await waitFor(() => s.hook.delivered().some((e) => e.state === "cancelled"));
    const again = await fetch(`${s.fm.url}/jobs/${running}`, {
      method: "DELETE",
      headers: s.fm.headers(),
    });
    assert.equal(again.status, 409);
    assert.match((await again.json()).error, /already cancelled/);
    // The target stopped generating for the aborted job: the worker is free again.
    const next = (await (await submit(s.fm, chat("tiny-c"))).json()).job_id;
    await waitFor(async () => (await getJob(s.fm, next)).state === "done");
  } finally {
    await s.close();
  }
});

Deno.test("Idempotency-Key returns the first job for the same body and 409 for another", async () => {
  const s = await stack();
  try {
    const body = chat("tiny-a");
    const first = await submit(s.fm, body, { "idempotency-key": "order-1" });
    const second = await submit(s.fm, body, { "idempotency-key": "order-1" });
    assert.equal(first.status, 202);
    assert.equal(second.status, 202);
    assert.equal((await first.json()).job_id, (await second.json()).job_id);
    const other = await submit(s.fm, chat("tiny-b"), { "idempotency-key": "order-1" });
    assert.equal(other.status, 409);
    assert.match((await other.json()).error, /Idempotency-Key/);
  } finally {
    await s.close();
  }
});

Deno.test("submissions are validated: webhook allowlist, model, body, ids and queue size", async () => {
  const s = await stack({ args: ["--max-queue", "2"], sim: { tokenMs: 30 } });
  try {
    const cases: [Record<string, unknown> | string, number, RegExp][] = [
      [
        chat("tiny-a", { state_webhook_url: "http://169.254.169.254/latest" }),
        400,
        /FOREMAN_WEBHOOK_HOSTS/,
      ],
      [
        chat("tiny-a", { state_webhook_url: `http://127.0.0.1:${s.hook.port + 1}/` }),
        400,
        /FOREMAN_WEBHOOK_HOSTS/,
      ],
      [chat("nope"), 404, /model "nope" not found/],
      [chat("tiny-a", { endpoint: "embed" }), 400, /endpoint/],
      [chat("tiny-a", { metadata: [1] }), 400, /metadata/],
      ["{oops", 400, /JSON object/],
      [{ messages: [] }, 400, /model is required/],
    ];
    for (const [body, status, re] of cases) {
      const res = await fetch(s.fm.url + "/jobs", {
        method: "POST",
        headers: s.fm.headers(),
        body: typeof body === "string" ? body : JSON.stringify(body),
      });
      assert.equal(res.status, status, JSON.stringify(body));
      assert.match((await res.json()).error, re);
    }
    assert.equal(s.hook.received.length, 0, "no connection to a refused receiver was tried");

    for (
      const [path, status] of [["/jobs/not-a-ulid", 400], [
        "/jobs/01J00000000000000000000000",
        404,
      ]] as const
    ) {
      const res = await fetch(s.fm.url + path, { headers: s.fm.headers() });
      assert.equal(res.status, status, path);
      assert.equal(typeof (await res.json()).error, "string");
    }
    const badList = await fetch(s.fm.url + "/jobs?state=bogus", { headers: s.fm.headers() });
    assert.equal(badList.status, 400);
    await badList.body?.cancel();

    // Fill the queue behind a long job: the next submission is refused with 503.
    await submit(s.fm, chat("tiny-a", { options: { num_predict: 200 } })).then((r) =>
      r.body?.cancel()
    );
    await waitFor(async () =>
      (await (await fetch(s.fm.url + "/healthz", { headers: s.fm.headers() })).json()).queue
        .running === 1
    );
    for (let i = 0; i < 2; i++) await submit(s.fm, chat("tiny-b")).then((r) => r.body?.cancel());
    const full = await submit(s.fm, chat("tiny-b"));
    assert.equal(full.status, 503);
    assert.match((await full.json()).error, /FOREMAN_MAX_QUEUE/);
  } finally {
    await s.close();
  }
});

Deno.test("metadata up to FOREMAN_MAX_METADATA (64 KiB as JSON) is taken; a byte more is a 400 naming the setting, and no job is made", async () => {
  const s = await stack();
  try {
    const limit = 64 * 1024;
    /** Metadata whose JSON is `bytes` long: `{"note":"…"}` around a run of x's, `tail` last. */
    const metadata = (bytes: number, tail = "") => {
      const wrapper = JSON.stringify({ note: tail }).length;
      const size = new TextEncoder().encode(tail).byteLength;
      return { note: "x".repeat(bytes - wrapper - size + tail.length) + tail };
    };
    const taken = await submit(s.fm, chat("tiny-a", { metadata: metadata(limit) }));
    assert.equal(taken.status, 202);
    const { job_id } = await taken.json();
    // One byte over: in ASCII, and with a two-byte character, which counts as two.
    const refused = [metadata(limit + 1), metadata(limit + 1, "é")];
    assert.equal(JSON.stringify(refused[1]).length, limit, "as many characters as the limit");
    for (const m of refused) {
      const res = await submit(s.fm, chat("tiny-a", { metadata: m }));
      assert.equal(res.status, 400);
      assert.equal(
        (await res.json()).error,
        `metadata too large: ${limit + 1} bytes as JSON, over the limit of ${limit} bytes set ` +
          "by jobs.max_metadata (FOREMAN_MAX_METADATA)",
      );
    }
    const { jobs } = await (await fetch(s.fm.url + "/jobs", { headers: s.fm.headers() })).json();
    assert.deepEqual(jobs.map((j: any) => j.job_id), [job_id], "only the job at the limit");
    assert.deepEqual((await getJob(s.fm, job_id)).metadata, metadata(limit));
  } finally {
    await s.close();
  }
});

Deno.test("GET /jobs lists newest first with filters and a ULID cursor", async () => {
  const s = await stack();
  try {
    const ids: string[] = [];
    for (const m of ["tiny-a", "tiny-b", "tiny-a", "tiny-b", "tiny-a"]) {
      ids.push((await (await submit(s.fm, chat(m))).json()).job_id);
    }
    await waitFor(async () => (await getJob(s.fm, ids[4]!)).state === "done");
    const page1 = await (await fetch(`${s.fm.url}/jobs?limit=2`, { headers: s.fm.headers() }))
      .json();
    assert.deepEqual(page1.jobs.map((j: any) => j.job_id), [ids[4], ids[3]]);
    // Lists carry no bodies: the result and inline artifacts are one GET /jobs/{id} away.
    const full = await getJob(s.fm, ids[4]!);
    const listed = page1.jobs[0];
    assert.equal(typeof full.result.message.content, "string");
    assert.equal(listed.result, null);
    assert.equal(typeof full.artifacts[0].inline, "string");
    assert.deepEqual(listed.artifacts, [{ ...full.artifacts[0], inline: null }]);
    const { result: _r, artifacts: _a, updated_at: _u, ...rest } = full;
    assert.deepEqual(
      Object.fromEntries(Object.keys(rest).map((k) => [k, listed[k]])),
      rest,
      "every other field as GET /jobs/{id} shows it",
    );
    const page2 = await (await fetch(`${s.fm.url}/jobs?limit=2&before=${page1.next}`, {
      headers: s.fm.headers(),
    }))
      .json();
    assert.deepEqual(page2.jobs.map((j: any) => j.job_id), [ids[2], ids[1]]);
    const onlyB = await (await fetch(`${s.fm.url}/jobs?model=tiny-b`, { headers: s.fm.headers() }))
      .json();
    assert.deepEqual(onlyB.jobs.map((j: any) => j.job_id), [ids[3], ids[1]]);
  } finally {
    await s.close();
  }
});

Deno.test("a generate job runs through the generate endpoint", async () => {
  const s = await stack();
  try {
    const { job_id } = await (await submit(s.fm, {
      endpoint: "generate",
      model: "tiny-b",
      prompt: "once upon",
      options: { num_predict: 3 },
    })).json();
    const job = await waitFor(async () => {
      const j = await getJob(s.fm, job_id);
      return j.state === "done" && j;
    });
    assert.equal(job.endpoint, "generate");
    assert.equal(typeof job.result.response, "string");
  } finally {
    await s.close();
  }
});

Deno.test("finished jobs are pruned after the TTL; queued ones are kept", async () => {
  const s = await stack({ args: ["--job-ttl", "1s"], sim: { tokenMs: 30 } });
  try {
    const done =
      (await (await submit(s.fm, chat("tiny-a", { options: { num_predict: 1 } }))).json()).job_id;
    await waitFor(async () => (await getJob(s.fm, done)).state === "done");
    const long =
      (await (await submit(s.fm, chat("tiny-a", { options: { num_predict: 150 } }))).json()).job_id;
    await waitFor(async () => {
      const r = await fetch(`${s.fm.url}/jobs/${done}`, { headers: s.fm.headers() });
      await r.body?.cancel();
      return r.status === 404;
    }, { timeout: 10_000, what: "the finished job to be pruned" });
    assert.notEqual((await getJob(s.fm, long)).state, undefined);
  } finally {
    await s.close();
  }
});

Deno.test("a job past its TTL stays until its final event reaches a receiver that recovers", async () => {
  // The receiver asks for a retry every second until it is switched back on.
  let up = false;
  const arrived: any[] = [];
  const receiver = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => {
      const body = await req.json();
      if (!up) return new Response("down", { status: 503, headers: { "retry-after": "1" } });
      arrived.push(body);
      return new Response("ok");
    },
  );
  const s = await stack({
    args: [
      "--job-ttl",
      "1s",
      "--webhook-hosts",
      `127.0.0.1:${receiver.addr.port}`,
      "--webhook-max-attempts",
      "100",
    ],
  });
  try {
    const hook = `http://127.0.0.1:${receiver.addr.port}/hook`;
    const kept = (await (await submit(s.fm, chat("tiny-a", { state_webhook_url: hook }))).json())
      .job_id;
    await waitFor(async () => (await getJob(s.fm, kept)).state === "done");
    const plain = (await (await submit(s.fm, chat("tiny-a"))).json()).job_id;
    // The plain job finished later, so once it is pruned the TTL of the first has passed too.
    await waitFor(async () => {
      const r = await fetch(`${s.fm.url}/jobs/${plain}`, { headers: s.fm.headers() });
      await r.body?.cancel();
      return r.status === 404;
    }, { timeout: 15_000, what: "the job without a webhook to be pruned" });
    const waiting = await getJob(s.fm, kept);
    assert.equal(waiting.state, "done", "kept past its TTL while its events are pending");
    assert.equal(waiting.webhook.pending, 4);
    up = true;
    await waitFor(() => arrived.some((e) => e.job_id === kept && e.state === "done"), {
      timeout: 15_000,
      what: "the done event to reach the recovered receiver",
    });
    assert.deepEqual(arrived.map((e) => e.state), ["queued", "loading", "working", "done"]);
    await waitFor(async () => {
      const r = await fetch(`${s.fm.url}/jobs/${kept}`, { headers: s.fm.headers() });
      await r.body?.cancel();
      return r.status === 404;
    }, { timeout: 15_000, what: "the job to be pruned once its events were delivered" });
  } finally {
    await s.close();
    await receiver.shutdown();
  }
});
