// ollama-api.md's "Names and defaults": the four spellings of one model, /api/show's older `name`
// field, and `"stream": null` meaning the default (streamed NDJSON).

import assert from "node:assert/strict";
import { call, chat, ndjson, type Obj, post, withSim } from "./helpers.ts";

const SPELLINGS = [
  "tiny-a",
  "tiny-a:latest",
  "library/tiny-a",
  "registry.ollama.ai/library/tiny-a:latest",
];

Deno.test("four spellings of a name reach one model and each answer echoes the name as written", async () => {
  await withSim({}, async (sim) => {
    for (const model of SPELLINGS) {
      const [status, chatted] = await call(sim, "/api/chat", chat(model, { stream: false }));
      assert.equal(status, 200, model);
      assert.equal(chatted.model, model);
      const [, generated] = await call(sim, "/api/generate", {
        model,
        prompt: "x",
        stream: false,
      });
      assert.equal(generated.model, model);
    }
    assert.deepEqual(sim.loads(), ["tiny-a:latest"], "one model, loaded once");
    const requested = sim.events.filter((e) => e.kind === "request").map((e) => e.model);
    assert.deepEqual(new Set(requested), new Set(["tiny-a:latest"]));

    const [, embedded] = await call(sim, "/api/embed", {
      model: "registry.ollama.ai/library/embed-e:latest",
      input: "x",
    });
    assert.equal(embedded.model, "registry.ollama.ai/library/embed-e:latest");
    assert.equal((embedded.embeddings as number[][]).length, 1);
  });
});

Deno.test("show accepts any spelling, under model or under the older name field", async () => {
  await withSim({}, async (sim) => {
    const [, expected] = await call(sim, "/api/show", { model: "tiny-a" });
    for (const model of SPELLINGS) {
      for (const body of [{ model }, { name: model }]) {
        const [status, shown] = await call(sim, "/api/show", body);
        assert.equal(status, 200, JSON.stringify(body));
        assert.deepEqual(shown, expected, JSON.stringify(body));
      }
    }
    assert.deepEqual(await call(sim, "/api/show", { name: "library/nope" }), [
      404,
      { error: "model 'library/nope' not found" },
    ]);
  });
});

Deno.test("stream null means the default: chat, generate and pull answer NDJSON", async () => {
  await withSim({}, async (sim) => {
    const chatted = await ndjson(await post(sim, "/api/chat", chat("tiny-a", { stream: null })));
    assert.equal(chatted.length, 9);
    assert.equal(chatted.at(-1)!.done, true);
    const generated = await ndjson(
      await post(sim, "/api/generate", { model: "tiny-a", prompt: "x", stream: null }),
    );
    assert.equal(generated.at(-1)!.done, true);
    assert.ok(generated.slice(0, -1).every((c: Obj) => c.done === false));
    const pulled = await ndjson(await post(sim, "/api/pull", { model: "tiny-a", stream: null }));
    assert.equal(pulled[0]!.status, "pulling manifest");
  });
});
