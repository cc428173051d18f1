// The native surface through a real foreman process in front of the Ollama simulator.

import assert from "node:assert/strict";
import { Ollama } from "ollama";
import { waitFor } from "../harness/foreman.ts";
import { type SimOptions, type Stack, startStack } from "./support/stack.ts";

/** The stack with an embedder, and loads slow enough to be seen. */
function stack(sim: SimOptions = {}, args: string[] = []): Promise<Stack> {
  return startStack({ sim: { loadMs: 20, ...sim }, args: ["--embed-model", "embed-e", ...args] });
}

Deno.test("an unchanged Ollama client works through foreman with a bearer header", async () => {
  const { fm, close } = await stack();
  try {
    const ollama = new Ollama({ host: fm.url, headers: { Authorization: `Bearer ${fm.token}` } });
    const chat = await ollama.chat({
      model: "tiny-a",
      messages: [{ role: "user", content: "hello" }],
      options: { num_predict: 5 },
    });
    assert.equal(chat.done, true);
    assert.ok(chat.message.content.length > 0);
    assert.ok(chat.eval_count > 0);

    let chunks = 0;
    let last;
    for await (
      const part of await ollama.chat({
        model: "tiny-a",
        messages: [{ role: "user", content: "stream please" }],
        stream: true,
        options: { num_predict: 6 },
      })
    ) {
      chunks++;
      last = part;
    }
    assert.ok(chunks >= 2, `streamed ${chunks} chunks`);
    assert.equal(last!.done, true);

    const gen = await ollama.generate({
      model: "tiny-b",
      prompt: "once",
      options: { num_predict: 4 },
    });
    assert.equal(gen.done, true);
    assert.ok((gen.response ?? "").length > 0);

    const emb = await ollama.embed({ model: "embed-e", input: ["a", "b"] });
    assert.equal(emb.embeddings.length, 2);

    const list = await ollama.list();
    assert.ok(list.models.some((m) => m.name === "tiny-a:latest"));
    const ps = await ollama.ps();
    assert.ok(Array.isArray(ps.models));
    const show = await ollama.show({ model: "tiny-a" });
    assert.ok(show.details);
    const version = await ollama.version();
    assert.equal(version.version, "0.11.4");
  } finally {
    await close();
  }
});

Deno.test("every protected route answers 401 without the right token; / and /healthz stay open", async () => {
  const { fm, close } = await stack();
  try {
    const routes: [string, string][] = [
      ["POST", "/api/chat"],
      ["POST", "/api/generate"],
      ["POST", "/api/embed"],
      ["POST", "/api/embeddings"],
      ["GET", "/api/tags"],
      ["GET", "/api/ps"],
      ["POST", "/api/show"],
      ["GET", "/api/version"],
      ["POST", "/api/pull"],
      ["POST", "/jobs"],
      ["GET", "/jobs"],
      ["GET", "/jobs/01J00000000000000000000000"],
      ["DELETE", "/jobs/01J00000000000000000000000"],
      ["GET", "/metrics"],
      ["GET", "/v1/models"],
      ["GET", "/v1/models/tiny-a"],
      ["POST", "/v1/chat/completions"],
      ["POST", "/v1/completions"],
      ["POST", "/v1/embeddings"],
      ["GET", "/v1/responses"],
    ];
    for (const [method, path] of routes) {
      for (
        const auth of [
          undefined,
          "Bearer wrong-token",
          `Basic ${btoa("a:b")}`,
          `Bearer ${fm.token}x`,
        ]
      ) {
        const res = await fetch(fm.url + path, {
          method,
          headers: auth ? { authorization: auth } : {},
          body: method === "POST" ? "{}" : undefined,
        });
        assert.equal(res.status, 401, `${method} ${path} with ${auth}`);
        assert.equal(res.headers.get("www-authenticate"), 'Bearer realm="foreman"');
        const { error } = await res.json();
        // Each surface in its own shape: OpenAI's under /v1, Ollama's elsewhere.
        if (path.startsWith("/v1/")) assert.equal(error.type, "authentication_error");
        else assert.equal(typeof error, "string");
      }
    }
    const root = await fetch(fm.url + "/");
    assert.equal(await root.text(), "Ollama is running");
    const head = await fetch(fm.url + "/", { method: "HEAD" });
    assert.equal(head.status, 200);
    await head.body?.cancel();
    const health = await fetch(fm.url + "/healthz");
    assert.equal((await health.json()).status, "ok");
  } finally {
    await close();
  }
});

Deno.test("bad requests get the right status and an Ollama-shaped error", async () => {
  const { fm, close } = await stack({}, ["--max-body", "1KiB"]);
  try {
    const cases: [string, string, BodyInit | undefined, number, RegExp][] = [
      ["POST", "/api/chat", "{not json", 400, /invalid JSON/],
      ["POST", "/api/chat", "", 400, /missing request body/],
      ["POST", "/api/chat", "[1,2]", 400, /JSON object/],
      ["POST", "/api/chat", JSON.stringify({ messages: [] }), 400, /model is required/],
      ["POST", "/api/chat", JSON.stringify({ model: 7 }), 400, /model must be a string/],
      ["POST", "/api/chat", JSON.stringify({ model: "tiny-a", messages: "hi" }), 400, /messages/],
      [
        "POST",
        "/api/chat",
        JSON.stringify({ model: "no-such-model" }),
        404,
        /model "no-such-model" not found/,
      ],
      [
        "POST",
        "/api/generate",
        JSON.stringify({ model: "tiny-a", prompt: "x".repeat(2000) }),
        413,
        /too large/,
      ],
      ["GET", "/api/nothing", undefined, 404, /no route/],
      ["GET", "/api/chat", undefined, 405, /method not allowed/],
      ["POST", "/api/pull", JSON.stringify({ model: "x" }), 403, /model management/],
      ["DELETE", "/api/delete", JSON.stringify({ model: "x" }), 403, /allow_model_management/],
      ["POST", "/api/chat", new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), 400, /UTF-8/],
    ];
    for (const [method, path, body, status, re] of cases) {
      const res = await fetch(fm.url + path, { method, headers: fm.headers(), body });
      const json = await res.json();
      assert.equal(
        res.status,
        status,
        `${method} ${path} ${String(body).slice(0, 30)}: ${json.error}`,
      );
      assert.match(json.error, re);
      assert.deepEqual(Object.keys(json), ["error"]);
    }
  } finally {
    await close();
  }
});

Deno.test("streaming relays NDJSON chunk by chunk with the job id header", async () => {
  const { fm, close } = await stack({ tokenMs: 30 });
  try {
    const res = await fetch(fm.url + "/api/chat", {
      method: "POST",
      headers: fm.headers(),
      body: JSON.stringify({
        model: "tiny-a",
        messages: [{ role: "user", content: "x" }],
        options: { num_predict: 10 },
      }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /application\/x-ndjson/);
    const id = res.headers.get("x-foreman-job-id");
    assert.match(id!, /^[0-9A-Z]{26}$/);
    const arrivals: number[] = [];
    let text = "";
    for await (const chunk of res.body!.pipeThrough(new TextDecoderStream())) {
      arrivals.push(performance.now());
      text += chunk;
    }
    const lines = text.trim().split("\n").map((l) => JSON.parse(l));
    assert.ok(lines.length >= 11);
    assert.equal(lines.at(-1).done, true);
    // Chunks arrived spread over the generation, not in one buffered burst.
    assert.ok(arrivals.length >= 5, `${arrivals.length} reads`);
    assert.ok(arrivals.at(-1)! - arrivals[0]! > 150, "relayed as produced");
  } finally {
    await close();
  }
});

Deno.test("stream:false returns one JSON object", async () => {
  const { fm, close } = await stack();
  try {
    const res = await fetch(fm.url + "/api/generate", {
      method: "POST",
      headers: fm.headers(),
      body: JSON.stringify({
        model: "tiny-b",
        prompt: "x",
        stream: false,
        options: { num_predict: 3 },
      }),
    });
    assert.match(res.headers.get("content-type")!, /application\/json/);
    const body = await res.json();
    assert.equal(body.done, true);
    assert.equal(typeof body.response, "string");
  } finally {
    await close();
  }
});

Deno.test("jobs for one model run strictly one at a time", async () => {
  const { fm, sim, close } = await stack({ tokenMs: 5 });
  try {
    await Promise.all(Array.from({ length: 6 }, (_, i) =>
      fetch(fm.url + "/api/chat", {
        method: "POST",
        headers: fm.headers(),
        body: JSON.stringify({
          model: "tiny-a",
          stream: false,
          messages: [{ role: "user", content: `q${i}` }],
          options: { num_predict: 8 },
        }),
      }).then((r) => r.json())));
    assert.equal(sim.maxConcurrent("tiny-a:latest"), 1);
    assert.equal(sim.maxConcurrent(), 1);
  } finally {
    await close();
  }
});

Deno.test("embeddings are answered while a long chat job runs", async () => {
  const { fm, close } = await stack({ tokenMs: 20 });
  try {
    // A chat of 20 s, ended by its caller once the embeddings are back: however slow the machine,
    // they come back first unless they wait for it.
    let chatDone = 0;
    const leave = new AbortController();
    const chat = fetch(fm.url + "/api/chat", {
      method: "POST",
      headers: fm.headers(),
      body: JSON.stringify({
        model: "tiny-a",
        stream: false,
        messages: [{ role: "user", content: "long" }],
        options: { num_predict: 1000 },
      }),
      signal: leave.signal,
    }).then(async (r) => {
      await r.json();
      chatDone = performance.now();
    }).catch((err) => {
      if (!leave.signal.aborted) throw err;
    });
    await waitFor(async () =>
      (await (await fetch(fm.url + "/healthz", { headers: fm.headers() })).json()).queue.running ===
        1
    );
    const embeds = await Promise.all(Array.from({ length: 5 }, () =>
      fetch(fm.url + "/api/embed", {
        method: "POST",
        headers: fm.headers(),
        body: JSON.stringify({ model: "embed-e", input: "x" }),
      }).then(async (r) => ({ status: r.status, body: await r.json(), at: performance.now() }))));
    assert.ok(embeds.every((e) => e.status === 200 && e.body.embeddings.length === 1));
    assert.equal(chatDone, 0, "every embedding came back while the chat was still running");
    leave.abort();
    await chat;
  } finally {
    await close();
  }
});

Deno.test("the client going away cancels its queued job", async () => {
  const { fm, close } = await stack({ tokenMs: 20 });
  try {
    const blocker = fetch(fm.url + "/api/chat", {
      method: "POST",
      headers: fm.headers(),
      body: JSON.stringify({
        model: "tiny-a",
        stream: false,
        messages: [{ role: "user", content: "hold" }],
        options: { num_predict: 40 },
      }),
    });
    await waitFor(async () =>
      (await (await fetch(fm.url + "/healthz", { headers: fm.headers() })).json()).queue.running ===
        1
    );
    const ac = new AbortController();
    const leaving = fetch(fm.url + "/api/chat", {
      method: "POST",
      headers: fm.headers(),
      body: JSON.stringify({ model: "tiny-b", messages: [{ role: "user", content: "bye" }] }),
      signal: ac.signal,
    }).catch(() => "aborted");
    await waitFor(async () =>
      (await (await fetch(fm.url + "/healthz", { headers: fm.headers() })).json()).queue.queued ===
        1
    );
    ac.abort();
    assert.equal(await leaving, "aborted");
    await waitFor(
      async () =>
        (await (await fetch(fm.url + "/healthz", { headers: fm.headers() })).json()).queue
          .queued === 0,
      {
        what: "the queued job to be cancelled",
      },
    );
    await (await blocker).json();
    const list = await (await fetch(fm.url + "/jobs?state=cancelled", { headers: fm.headers() }))
      .json();
    assert.equal(list.jobs.length, 1);
    assert.equal(list.jobs[0].model, "tiny-b:latest");
  } finally {
    await close();
  }
});

Deno.test("the target going down makes jobs wait; they complete when it returns", async () => {
  const { fm, sim, close } = await stack({}, ["--retry-base", "100ms"]);
  try {
    await waitFor(async () =>
      (await (await fetch(fm.url + "/healthz", { headers: fm.headers() })).json()).target.reachable
    );
    await sim.stop();
    const answer = fetch(fm.url + "/api/chat", {
      method: "POST",
      headers: fm.headers(),
      body: JSON.stringify({
        model: "tiny-a",
        stream: false,
        messages: [{ role: "user", content: "hi" }],
      }),
    }).then(async (r) => ({ status: r.status, body: await r.json() }));
    await fm.waitForOutput("target unreachable, job requeued");
    const health = await (await fetch(fm.url + "/healthz", { headers: fm.headers() })).json();
    assert.equal(health.queue.queued + health.queue.running, 1);
    await sim.restart();
    const { status, body } = await answer;
    assert.equal(status, 200);
    assert.equal(body.done, true);
  } finally {
    await close();
  }
});

Deno.test("Host and Origin of the caller never reach the target", async () => {
  const { fm, sim, close } = await stack();
  try {
    const res = await fetch(fm.url + "/api/chat", {
      method: "POST",
      headers: fm.headers({ origin: "https://evil.example.com", "x-forwarded-host": "evil" }),
      body: JSON.stringify({ model: "tiny-a", stream: false, messages: [] }),
    });
    assert.equal(res.status, 200, "the simulator would answer 403 to a foreign Origin");
    await res.body?.cancel();
    for (const r of sim.requests) {
      assert.equal(r.headers.get("origin"), null);
      assert.ok(!r.headers.get("host")?.includes("evil"));
    }
  } finally {
    await close();
  }
});
