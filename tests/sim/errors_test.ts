// The simulator's errors, each with Ollama 0.11.4's status and text: unknown models, bad bodies,
// missing capabilities, think levels, mistyped options and formats, bad keep_alive values.

import assert from "node:assert/strict";
import { call, chat, ndjson, type Obj, post, withSim } from "./helpers.ts";

Deno.test("an unknown model is a 404 with the message each Ollama route gives", async () => {
  await withSim({}, async (sim) => {
    assert.deepEqual(await call(sim, "/api/chat", chat("nope")), [
      404,
      { error: 'model "nope" not found, try pulling it first' },
    ]);
    // Chat looks the name up itself only to unload (empty messages, keep_alive 0).
    assert.deepEqual(await call(sim, "/api/chat", { model: "nope", keep_alive: 0 }), [
      404,
      { error: "model 'nope' not found" },
    ]);
    assert.deepEqual(await call(sim, "/api/generate", { model: "nope", prompt: "x" }), [
      404,
      { error: "model 'nope' not found" },
    ]);
    assert.deepEqual(await call(sim, "/api/show", { model: "nope" }), [
      404,
      { error: "model 'nope' not found" },
    ]);
    for (const path of ["/api/embed", "/api/embeddings"]) {
      assert.deepEqual(await call(sim, path, { model: "nope", input: "x", prompt: "x" }), [
        404,
        { error: 'model "nope" not found, try pulling it first' },
      ]);
    }
    assert.deepEqual(sim.loads(), []);
  });
});

Deno.test("bad JSON, an empty body and a missing model are 400s", async () => {
  await withSim({}, async (sim) => {
    const [status, body] = await call(sim, "/api/chat", "{not json");
    assert.equal(status, 400);
    assert.equal(typeof body.error, "string");
    assert.deepEqual(await call(sim, "/api/chat", ""), [400, { error: "missing request body" }]);
    assert.deepEqual(await call(sim, "/api/chat", { messages: [] }), [
      400,
      { error: "model is required" },
    ]);
    // /api/embed asks the scheduler for a model named "", /api/embeddings checks the name first.
    assert.deepEqual(await call(sim, "/api/embed", { input: "x" }), [
      404,
      { error: 'model "" not found, try pulling it first' },
    ]);
    assert.deepEqual(await call(sim, "/api/embeddings", { prompt: "x" }), [
      400,
      { error: "model is required" },
    ]);
    // Ollama's generate reports a missing name as an unknown model.
    assert.deepEqual(await call(sim, "/api/generate", { prompt: "x" }), [
      404,
      { error: "model '' not found" },
    ]);
    const [typeStatus, typeBody] = await call(sim, "/api/chat", { model: 7 });
    assert.equal(typeStatus, 400);
    assert.match(typeBody.error as string, /cannot unmarshal number into Go struct field/);
  });
});

Deno.test("think, tools or suffix on a model without the capability is a 400 naming it in full", async () => {
  const tools = [{ type: "function", function: { name: "f", parameters: {} } }];
  await withSim({ capabilities: { "tiny-a": ["completion"] } }, async (sim) => {
    const [, show] = await call(sim, "/api/show", { model: "tiny-a" });
    assert.deepEqual(show.capabilities, ["completion"]);
    const refused = (what: string) => [
      400,
      { error: `registry.ollama.ai/library/tiny-a:latest does not support ${what}` },
    ];
    assert.deepEqual(
      await call(sim, "/api/chat", chat("tiny-a", { think: true })),
      refused("thinking"),
    );
    assert.deepEqual(await call(sim, "/api/chat", chat("tiny-a", { tools })), refused("tools"));
    // Go's errors.Join separates the missing capabilities with a newline.
    assert.deepEqual(
      await call(sim, "/api/chat", chat("tiny-a", { tools, think: true })),
      refused("tools\nthinking"),
    );
    assert.deepEqual(
      await call(sim, "/api/generate", { model: "tiny-a", prompt: "x", think: "low" }),
      [400, { error: 'think value "low" is not supported for this model' }],
      "generate refuses a think level before it looks at capabilities",
    );
    assert.deepEqual(
      await call(sim, "/api/generate", { model: "tiny-a", prompt: "x", think: true }),
      refused("thinking"),
    );
    assert.deepEqual(
      await call(sim, "/api/generate", { model: "tiny-a", prompt: "x", suffix: "y" }),
      refused("insert"),
    );
    // Without completion, that is what Ollama names, with the model as sent.
    assert.deepEqual(await call(sim, "/api/chat", chat("embed-e", { think: true })), [
      400,
      { error: '"embed-e" does not support chat' },
    ]);
    assert.deepEqual(await call(sim, "/api/generate", { model: "embed-e", prompt: "x" }), [
      400,
      { error: '"embed-e" does not support generate' },
    ]);
    const [ok] = await call(
      sim,
      "/api/chat",
      chat("tiny-b", { tools, think: true, stream: false }),
    );
    assert.equal(ok, 200, "other models keep the default capabilities");
    assert.deepEqual(sim.loads(), ["tiny-b:latest"]);
  });
});

Deno.test("a think level is for gpt-oss only: chat refuses it once the model is loaded", async () => {
  await withSim({}, async (sim) => {
    assert.deepEqual(await call(sim, "/api/chat", chat("tiny-a", { think: "high" })), [
      400,
      { error: 'think value "high" is not supported for this model' },
    ]);
    assert.deepEqual(sim.loads(), ["tiny-a:latest"]);
    const [, loaded] = await call(sim, "/api/chat", {
      model: "tiny-b",
      messages: [],
      think: "low",
    });
    assert.equal(loaded.done_reason, "load", "an empty chat only loads, before the check");
  });
});

Deno.test("a mistyped option is a 500 before anything loads; unknown options are ignored", async () => {
  await withSim({}, async (sim) => {
    const mistyped: [path: string, body: Obj, option: string, type: string][] = [
      ["/api/chat", chat("tiny-a"), "num_predict", "integer"],
      ["/api/chat", chat("tiny-a", { think: true }), "temperature", "float32"],
      ["/api/generate", { model: "tiny-a", prompt: "" }, "seed", "integer"],
      ["/api/generate", { model: "tiny-a", prompt: "x" }, "stop", "array"],
      ["/api/generate", { model: "tiny-a" }, "use_mmap", "boolean"],
      ["/api/embed", { model: "embed-e", input: "x" }, "num_ctx", "integer"],
      ["/api/embeddings", { model: "embed-e", prompt: "x" }, "top_k", "integer"],
    ];
    for (const [path, body, option, type] of mistyped) {
      const value = type === "array" || type === "boolean" ? 1 : "x";
      assert.deepEqual(
        await call(sim, path, { ...body, options: { [option]: value } }),
        [500, { error: `option "${option}" must be of type ${type}` }],
        `${path} ${option}`,
      );
    }
    assert.deepEqual(
      await call(sim, "/api/generate", {
        model: "tiny-a",
        prompt: "x",
        options: { stop: ["a", 1] },
      }),
      [500, { error: 'option "stop" must be of an array of strings' }],
    );
    assert.deepEqual(
      await call(sim, "/api/chat", chat("nope", { options: { num_predict: "x" } })),
      [404, { error: 'model "nope" not found, try pulling it first' }],
      "the model is looked up first",
    );
    assert.deepEqual(sim.loads(), []);
    const fine = { nope: "x", stop: null, num_predict: 2.9, top_p: 1, temperature: 0 };
    const [status, body] = await call(
      sim,
      "/api/chat",
      chat("tiny-a", { stream: false, options: fine }),
    );
    assert.equal(status, 200);
    assert.equal(body.eval_count, 2);
  });
});

Deno.test("a format other than json or a schema fails once the model is loaded", async () => {
  await withSim({}, async (sim) => {
    const expected = (raw: string) =>
      `invalid format: ${JSON.stringify(raw)}; expected "json" or a valid JSON Schema object`;
    assert.deepEqual(
      await call(sim, "/api/chat", chat("tiny-a", { format: "xml", stream: false })),
      [
        500,
        { error: expected('"xml"') },
      ],
    );
    assert.deepEqual(sim.loads(), ["tiny-a:latest"], "the runner checks it, after the load");
    // Streamed, the headers are out already: 200 and one NDJSON error line.
    const streamed = await post(sim, "/api/generate", { model: "tiny-a", prompt: "x", format: 5 });
    assert.equal(streamed.status, 200);
    assert.deepEqual(await ndjson(streamed), [{ error: expected("5") }]);
    assert.deepEqual(
      await call(sim, "/api/generate", {
        model: "tiny-a",
        prompt: "x",
        stream: false,
        format: [1],
      }),
      [500, { error: expected("[1]") }],
    );
    for (const format of ["json", "", null, {}, { type: "object" }]) {
      const [status] = await call(sim, "/api/chat", chat("tiny-a", { format, stream: false }));
      assert.equal(status, 200, `format ${JSON.stringify(format)} is accepted`);
    }
    const [, load] = await call(sim, "/api/chat", { model: "tiny-b", messages: [], format: "xml" });
    assert.equal(load.done_reason, "load", "a load request never reaches the runner");
  });
});

Deno.test("a keep_alive that is a bare number string is a 400, units and numbers are fine", async () => {
  await withSim({}, async (sim) => {
    assert.deepEqual(await call(sim, "/api/generate", { model: "tiny-a", keep_alive: "3600" }), [
      400,
      { error: 'time: missing unit in duration "3600"' },
    ]);
    assert.deepEqual(await call(sim, "/api/chat", { model: "tiny-a", keep_alive: "5x" }), [
      400,
      { error: 'time: unknown unit "x" in duration "5x"' },
    ]);
    for (const keep_alive of ["1h30m", "-1m", 3600, -1]) {
      const [status] = await call(sim, "/api/generate", { model: "tiny-a", keep_alive });
      assert.equal(status, 200, `keep_alive ${JSON.stringify(keep_alive)} is accepted`);
    }
  });
});
