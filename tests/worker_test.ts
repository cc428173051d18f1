// Worker behaviour against target errors, the outbound token and embedder residency, through a
// real foreman process in front of the simulator.

import assert from "node:assert/strict";
import { type ForemanProcess, waitFor } from "../harness/foreman.ts";
import { startStack } from "./support/stack.ts";
import { openStore } from "./support/store.ts";

function chatBody(model: string, stream = false) {
  return JSON.stringify({
    model,
    stream,
    messages: [{ role: "user", content: "x" }],
    options: { num_predict: 3 },
  });
}

/** POST /api/chat to foreman with the test token. */
function postChat(fm: ForemanProcess, body: string): Promise<Response> {
  return fetch(fm.url + "/api/chat", { method: "POST", headers: fm.headers(), body });
}

Deno.test("target HTTP errors count attempts: a 500 is retried, and after the last attempt the caller gets the target's error", async () => {
  const { sim, fm, close } = await startStack({
    args: ["--retry-base", "50ms", "--max-attempts", "3"],
  });
  try {
    // Warm the model so the faults hit the inference request itself.
    await (await postChat(fm, chatBody("tiny-a"))).json();

    sim.failNext(2, 500, "llama runner process has terminated");
    const ok = await postChat(fm, chatBody("tiny-a"));
    assert.equal(ok.status, 200);
    assert.equal((await ok.json()).done, true);
    const id = ok.headers.get("x-foreman-job-id")!;
    const job = await (await fetch(`${fm.url}/jobs/${id}`, { headers: fm.headers() })).json();
    assert.equal(job.attempt, 3);
    assert.equal(job.kind, "sync");

    sim.failNext(3, 500, "llama runner process has terminated");
    const failed = await postChat(fm, chatBody("tiny-a"));
    assert.equal(failed.status, 500);
    assert.deepEqual(await failed.json(), { error: "llama runner process has terminated" });
    const fid = failed.headers.get("x-foreman-job-id")!;
    const fjob = await (await fetch(`${fm.url}/jobs/${fid}`, { headers: fm.headers() })).json();
    assert.equal(fjob.state, "failed");
    assert.equal(fjob.attempt, 3);
  } finally {
    await close();
  }
});

Deno.test("a request the target rejects as invalid fails at once with the target's status", async () => {
  const { fm, close } = await startStack();
  try {
    // The simulator's embedding-only model refuses chat, as Ollama does for capabilities.
    const res = await postChat(fm, chatBody("embed-e"));
    assert.equal(res.status, 400);
    assert.match((await res.json()).error, /does not support chat/);
  } finally {
    await close();
  }
});

Deno.test("the target dropping the connection before answering never fails a job", async () => {
  const { sim, fm, close } = await startStack({
    args: ["--retry-base", "50ms", "--max-attempts", "1"],
  });
  try {
    await (await postChat(fm, chatBody("tiny-a"))).json();
    sim.dropNext(3);
    const res = await postChat(fm, chatBody("tiny-a"));
    assert.equal(
      res.status,
      200,
      "three dropped connections with max_attempts 1 still end in success",
    );
    assert.equal((await res.json()).done, true);
  } finally {
    await close();
  }
});

Deno.test("stopping foreman mid-job puts the job back in the queue with its attempt refunded", async () => {
  const { fm, close } = await startStack({ sim: { tokenMs: 200 } });
  try {
    const submitted = await fetch(fm.url + "/jobs", {
      method: "POST",
      headers: fm.headers(),
      body: JSON.stringify({
        model: "tiny-a",
        messages: [{ role: "user", content: "x" }],
        options: { num_predict: 200 },
      }),
    });
    const { job_id } = await submitted.json();
    const job = async () =>
      await (await fetch(`${fm.url}/jobs/${job_id}`, { headers: fm.headers() })).json();
    await waitFor(async () => (await job()).state === "working", { what: "the job to work" });
    await fm.stop();
    const store = openStore(fm.dbPath);
    try {
      const stopped = store.get(job_id)!;
      assert.deepEqual(
        [stopped.state, stopped.attempt, stopped.error],
        ["queued", 0, "foreman is shutting down"],
      );
    } finally {
      store.close();
    }
  } finally {
    await close();
  }
});

Deno.test("foreman sends its outbound token to the target and never the caller's", async () => {
  const { sim, fm, close } = await startStack({ env: { FOREMAN_OLLAMA_TOKEN: "to-the-target" } });
  try {
    await (await postChat(fm, chatBody("tiny-a"))).json();
    await (await fetch(fm.url + "/api/embed", {
      method: "POST",
      headers: fm.headers(),
      body: JSON.stringify({ model: "embed-e", input: "x" }),
    })).json();
    assert.ok(sim.requests.length > 0);
    for (const r of sim.requests) {
      assert.equal(r.headers.get("authorization"), "Bearer to-the-target", r.path);
    }
    assert.ok(!fm.output().includes("to-the-target"), "the token is never logged");
    assert.ok(!fm.output().includes(fm.token), "the inbound token is never logged");
  } finally {
    await close();
  }
});

Deno.test("the embedder is warmed at start and again after the target restarts and forgets it", async () => {
  const { sim, fm, close } = await startStack({
    args: ["--poll-interval", "200ms", "--embed-model", "embed-e"],
  });
  try {
    await waitFor(() => sim.resident().includes("embed-e:latest"), {
      what: "embedder warm at start",
    });
    const warm = sim.requests.find((r) => r.path === "/api/embed");
    assert.equal((warm!.body as { keep_alive: number }).keep_alive, -1);
    await sim.restart();
    assert.ok(!sim.resident().includes("embed-e:latest"));
    await waitFor(() => sim.resident().includes("embed-e:latest"), { what: "embedder warm again" });
    const ps = await (await fetch(fm.url + "/api/ps", { headers: fm.headers() })).json();
    const embed = ps.models.find((m: { name: string }) => m.name === "embed-e:latest");
    assert.ok(new Date(embed.expires_at).getFullYear() > 2100, "kept forever");
  } finally {
    await close();
  }
});

Deno.test("tags come from the inventory cache and keep being served while the target is down", async () => {
  const { sim, fm, close } = await startStack({ args: ["--poll-interval", "200ms"] });
  try {
    const before = await (await fetch(fm.url + "/api/tags", { headers: fm.headers() })).json();
    await sim.stop();
    await waitFor(async () => (await (await fetch(fm.url + "/healthz")).json()).degraded === true);
    const after = await (await fetch(fm.url + "/api/tags", { headers: fm.headers() })).json();
    assert.deepEqual(after, before);
    const ps = await fetch(fm.url + "/api/ps", { headers: fm.headers() });
    assert.equal(ps.status, 200);
    assert.equal(ps.headers.get("x-foreman-cached"), "true");
    await ps.body?.cancel();
    const embed = await fetch(fm.url + "/api/embed", {
      method: "POST",
      headers: fm.headers(),
      body: JSON.stringify({ model: "embed-e", input: "x" }),
    });
    assert.equal(embed.status, 503);
    assert.match((await embed.json()).error, /target unavailable/);
    // A job is still accepted: one failed poll is never a reason to refuse work.
    const job = await fetch(fm.url + "/jobs", {
      method: "POST",
      headers: fm.headers(),
      body: JSON.stringify({ model: "tiny-a", messages: [{ role: "user", content: "x" }] }),
    });
    assert.equal(job.status, 202);
    await job.body?.cancel();
  } finally {
    await close();
  }
});

Deno.test("a response that ends without done:true fails its job, as real Ollama can end one", async () => {
  // With repeatLimit the simulator, like Ollama 0.11.4, stops a repetitive answer after 31 tokens.
  const { fm, close } = await startStack({
    sim: { repeatLimit: true },
    args: ["--retry-base", "50ms", "--max-attempts", "2"],
  });
  try {
    const body = (stream: boolean) =>
      JSON.stringify({
        model: "tiny-a",
        stream,
        messages: [{ role: "user", content: "x" }],
        options: { num_predict: 60 },
      });
    const streamed = await postChat(fm, body(true));
    assert.equal(streamed.status, 200);
    const lines = (await streamed.text()).trim().split("\n").map((l) => JSON.parse(l));
    assert.ok(lines.every((l) => l.done === false), "the caller gets exactly what the target sent");
    const id = streamed.headers.get("x-foreman-job-id")!;
    const job = await (await fetch(`${fm.url}/jobs/${id}`, { headers: fm.headers() })).json();
    assert.equal(job.state, "failed");
    assert.match(job.error, /without done:true/);

    const res = await fetch(fm.url + "/jobs", {
      method: "POST",
      headers: fm.headers(),
      body: body(false),
    });
    const { job_id } = await res.json();
    const failed = await waitFor(async () => {
      const j = await (await fetch(`${fm.url}/jobs/${job_id}`, { headers: fm.headers() })).json();
      return j.state === "failed" && j;
    });
    assert.equal(
      failed.attempt,
      2,
      "an incomplete answer counts as a failed attempt and is retried",
    );
  } finally {
    await close();
  }
});

Deno.test("a job that finds the target unreachable turns /healthz degraded at once, not at the next poll, and a job that reaches it again turns it back", async () => {
  // A poll a minute apart: only the worker's news can change what /healthz says in time.
  const { sim, fm, close } = await startStack({
    args: ["--poll-interval", "60s", "--retry-base", "100ms"],
  });
  const degraded = async () => (await (await fetch(fm.url + "/healthz")).json()).degraded;
  try {
    await waitFor(async () => await degraded() === false, { what: "the first poll" });
    await sim.stop();
    const submitted = await fetch(fm.url + "/jobs", {
      method: "POST",
      headers: fm.headers(),
      body: chatBody("tiny-a"),
    });
    assert.equal(submitted.status, 202);
    const { job_id } = await submitted.json();
    await waitFor(async () => await degraded() === true, { timeout: 5000, what: "degraded" });
    await sim.restart();
    await waitFor(async () => {
      const job = await (await fetch(`${fm.url}/jobs/${job_id}`, { headers: fm.headers() })).json();
      return job.state === "done";
    }, { timeout: 10_000, what: "the job done once the target is back" });
    await waitFor(async () => await degraded() === false, { timeout: 5000, what: "not degraded" });
  } finally {
    await close();
  }
});

Deno.test("sync jobs taken straight by an idle worker or chained after the one before each leave queued, loading, working and done, in order", async () => {
  const { fm, close } = await startStack({ args: ["--poll-interval", "60s"] });
  try {
    // One caller after another (the worker idle each time), then four at once (a queue behind
    // the running job, each taken in the completion of the one before).
    const ids: string[] = [];
    const chat = async (model: string) => {
      const res = await postChat(fm, chatBody(model));
      assert.equal(res.status, 200);
      assert.equal((await res.json()).done, true);
      ids.push(res.headers.get("x-foreman-job-id")!);
    };
    for (let i = 0; i < 3; i++) await chat("tiny-a");
    await Promise.all(
      Array.from({ length: 12 }, (_, i) => chat(i % 4 === 3 ? "tiny-b" : "tiny-a")),
    );
    const store = openStore(fm.dbPath);
    try {
      for (const id of ids) {
        const events = store.outbox.eventsAfter(id, 0);
        assert.deepEqual(events.map((e) => e.state), ["queued", "loading", "working", "done"]);
        assert.deepEqual(
          events.map((e) => JSON.parse(e.body).previous_state),
          [null, "queued", "loading", "working"],
        );
      }
    } finally {
      store.close();
    }
  } finally {
    await close();
  }
});
