// The simulator's scheduler: loading, keep_alive expiry and unloading, eviction, reloads on new
// runner options, one generation per model at a time, and what a departing client frees.

import assert from "node:assert/strict";
import { call, chat, lineReader, ndjson, post, ps, waitFor, withSim } from "./helpers.ts";

Deno.test("an empty prompt or empty messages load the model and answer done_reason load", async () => {
  await withSim({}, async (sim) => {
    const [, gen] = await call(sim, "/api/generate", { model: "tiny-a", prompt: "" });
    assert.equal(gen.done, true);
    assert.equal(gen.done_reason, "load");
    const [, chatted] = await call(sim, "/api/chat", { model: "tiny-b", messages: [] });
    assert.equal(chatted.done_reason, "load");
    assert.deepEqual(chatted.message, { role: "assistant", content: "" });
    assert.deepEqual(sim.resident(), ["tiny-a:latest", "tiny-b:latest"]);
  });
});

Deno.test("keep_alive 0 with an empty prompt unloads the model at once", async () => {
  await withSim({}, async (sim) => {
    await call(sim, "/api/generate", { model: "tiny-a", prompt: "" });
    await call(sim, "/api/chat", { model: "tiny-b", messages: [] });
    const [, gen] = await call(sim, "/api/generate", { model: "tiny-a", keep_alive: 0 });
    assert.equal(gen.done_reason, "unload");
    assert.deepEqual(sim.resident(), ["tiny-b:latest"]);
    const [, chatted] = await call(sim, "/api/chat", {
      model: "tiny-b",
      messages: [],
      keep_alive: "0",
    });
    assert.equal(chatted.done_reason, "unload");
    assert.deepEqual(sim.resident(), []);
    assert.deepEqual(sim.unloads(), ["tiny-a:latest", "tiny-b:latest"]);
  });
});

Deno.test("with two models loaded, a third evicts the least recently used idle one", async () => {
  await withSim({ maxLoaded: 2 }, async (sim) => {
    await call(sim, "/api/chat", chat("tiny-a", { stream: false }));
    await call(sim, "/api/chat", chat("tiny-b", { stream: false }));
    await call(sim, "/api/chat", chat("tiny-a", { stream: false })); // tiny-b is now the LRU
    await call(sim, "/api/chat", chat("tiny-c", { stream: false }));
    assert.deepEqual(sim.loads(), ["tiny-a:latest", "tiny-b:latest", "tiny-c:latest"]);
    assert.deepEqual(sim.unloads(), ["tiny-b:latest"]);
    assert.deepEqual(sim.resident(), ["tiny-a:latest", "tiny-c:latest"]);
    const order = sim.events.filter((e) => e.kind === "load" || e.kind === "unload")
      .map((e) => `${e.kind} ${e.model}`);
    assert.deepEqual(order, [
      "load tiny-a:latest",
      "load tiny-b:latest",
      "unload tiny-b:latest",
      "load tiny-c:latest",
    ]);
  });
});

Deno.test("eviction waits for a busy model to finish instead of cutting it off", async () => {
  await withSim({ maxLoaded: 1, tokenMs: 5, tokens: 10 }, async (sim) => {
    const first = post(sim, "/api/chat", chat("tiny-a"));
    await waitFor("tiny-a to start generating", () => sim.events.some((e) => e.kind === "start"));
    const [, second] = await call(sim, "/api/chat", chat("tiny-b", { stream: false }));
    assert.equal(second.done, true);
    const chunks = await ndjson(await first);
    assert.equal(chunks.at(-1)!.done, true, "tiny-a's answer is complete");
    const kinds = sim.events.map((e) => `${e.kind} ${e.model}`);
    assert.ok(kinds.indexOf("end tiny-a:latest") < kinds.indexOf("unload tiny-a:latest"));
    assert.ok(kinds.indexOf("unload tiny-a:latest") < kinds.indexOf("load tiny-b:latest"));
  });
});

Deno.test("changing a runner option such as num_ctx reloads the model", async () => {
  await withSim({}, async (sim) => {
    await call(sim, "/api/generate", { model: "tiny-a", prompt: "x", stream: false });
    await call(sim, "/api/generate", {
      model: "tiny-a",
      prompt: "x",
      stream: false,
      options: { temperature: 0 },
    });
    assert.deepEqual(sim.loads(), ["tiny-a:latest"], "sampling options do not reload");
    await call(sim, "/api/generate", {
      model: "tiny-a",
      prompt: "x",
      stream: false,
      options: { num_ctx: 8192 },
    });
    assert.deepEqual(sim.loads(), ["tiny-a:latest", "tiny-a:latest"]);
    assert.deepEqual(sim.unloads(), ["tiny-a:latest"]);
  });
});

Deno.test("expires_at follows keep_alive and a model unloads by itself when it passes", async () => {
  await withSim({}, async (sim) => {
    await call(sim, "/api/generate", {
      model: "tiny-a",
      prompt: "x",
      keep_alive: "1h",
      stream: false,
    });
    const [hour] = await ps(sim);
    assert.ok(hour);
    const left = Date.parse(hour.expires_at as string) - Date.now();
    assert.ok(Math.abs(left - 3_600_000) < 5_000, `expires in about an hour (${left} ms)`);

    await call(sim, "/api/generate", {
      model: "tiny-b",
      prompt: "x",
      keep_alive: "200ms",
      stream: false,
    });
    const b = (await ps(sim)).find((m) => m.name === "tiny-b:latest")!;
    assert.ok(Date.parse(b.expires_at as string) - Date.now() < 1_000);
    await waitFor("tiny-b to expire", () => !sim.resident().includes("tiny-b:latest"));
    assert.deepEqual(sim.resident(), ["tiny-a:latest"]);
    assert.deepEqual(sim.unloads(), ["tiny-b:latest"]);
  });
});

Deno.test("keep_alive -1 keeps a model with a far-future expires_at", async () => {
  await withSim({ defaultKeepAlive: "1s" }, async (sim) => {
    await call(sim, "/api/generate", { model: "tiny-a", prompt: "", keep_alive: -1 });
    await call(sim, "/api/generate", { model: "tiny-b", prompt: "", keep_alive: "-1m" });
    for (const m of await ps(sim)) {
      assert.ok(new Date(m.expires_at as string).getUTCFullYear() > 2300, `${m.name} kept forever`);
    }
  });
});

Deno.test("requests for one model run one at a time while two models run together", async () => {
  await withSim({ tokenMs: 4, tokens: 10 }, async (sim) => {
    await call(sim, "/api/generate", { model: "tiny-a", prompt: "" });
    await call(sim, "/api/generate", { model: "tiny-b", prompt: "" });
    await Promise.all(
      [1, 2, 3].map(() => call(sim, "/api/chat", chat("tiny-a", { stream: false }))),
    );
    assert.equal(sim.maxConcurrent("tiny-a"), 1);
    assert.equal(sim.maxConcurrent(), 1);
    await Promise.all(
      ["tiny-a", "tiny-b"].map((m) => call(sim, "/api/chat", chat(m, { stream: false }))),
    );
    assert.equal(sim.maxConcurrent("tiny-a:latest"), 1);
    assert.equal(sim.maxConcurrent("tiny-b"), 1);
    assert.equal(sim.maxConcurrent(), 2);
  });
});

Deno.test("a client leaving mid-stream stops the generation and frees the model", async () => {
  await withSim({ tokenMs: 10, tokens: 300 }, async (sim) => {
    const started = Date.now();
    const lines = lineReader(await post(sim, "/api/chat", chat("tiny-a")));
    assert.ok(await lines.next());
    await lines.cancel();
    await waitFor("the generation to end", () => sim.events.some((e) => e.kind === "end"));
    const [status] = await call(sim, "/api/generate", {
      model: "tiny-a",
      prompt: "x",
      stream: false,
      options: { num_predict: 1 },
    });
    assert.equal(status, 200);
    assert.ok(Date.now() - started < 2_000, "the 3 s generation did not run to its end");
  });
});

Deno.test("embed returns deterministic L2-normalised vectors and empty input only loads", async () => {
  await withSim({ dimensions: 16 }, async (sim) => {
    const [, one] = await call(sim, "/api/embed", { model: "embed-e", input: "hello" });
    const [, two] = await call(sim, "/api/embed", { model: "embed-e", input: ["hello", "world"] });
    const vectors = two.embeddings as number[][];
    assert.equal(vectors.length, 2);
    for (const v of vectors) {
      assert.equal(v.length, 16);
      assert.ok(Math.abs(Math.hypot(...v) - 1) < 1e-9, "unit length");
    }
    assert.deepEqual((one.embeddings as number[][])[0], vectors[0]);
    assert.notDeepEqual(vectors[0], vectors[1]);
    assert.equal(one.model, "embed-e");
    assert.ok(Number.isInteger(one.prompt_eval_count));

    const [, empty] = await call(sim, "/api/embed", { model: "tiny-a", input: [] });
    assert.deepEqual(empty, { model: "tiny-a", embeddings: [] });
    assert.ok(sim.resident().includes("tiny-a:latest"));

    const [, legacy] = await call(sim, "/api/embeddings", { model: "embed-e", prompt: "hello" });
    assert.equal((legacy.embedding as number[]).length, 16);
    assert.equal(sim.maxConcurrent(), 0, "embeddings are not generations");
  });
});
