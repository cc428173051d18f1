// Tests of the Ollama simulator against real HTTP on 127.0.0.1: wire shapes, errors, scheduling
// (load, evict, keep_alive, one generation per model) and the faults the crash suites rely on.
// Run with `deno test --allow-net tests/ollama_sim_test.ts` (the CLI test also needs --allow-run).

import assert from "node:assert/strict";
import { OllamaSim, type SimOptions, simWords } from "../sim/mod.ts";

type Obj = Record<string, unknown>;

async function withSim(opts: SimOptions, fn: (sim: OllamaSim) => Promise<void>): Promise<void> {
  const sim = await OllamaSim.start({ loadMs: 10, tokenMs: 1, ...opts });
  try {
    await fn(sim);
  } finally {
    await sim.close();
  }
}

function post(sim: OllamaSim, path: string, body: unknown, headers: HeadersInit = {}) {
  return fetch(sim.url + path, {
    method: "POST",
    headers,
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function call(sim: OllamaSim, path: string, body: unknown): Promise<[number, Obj]> {
  const res = await post(sim, path, body);
  return [res.status, await res.json()];
}

async function ndjson(res: Response): Promise<Obj[]> {
  assert.equal(res.headers.get("content-type"), "application/x-ndjson");
  const text = await res.text();
  assert.ok(text.endsWith("\n"), "every NDJSON line ends with a newline");
  return text.trimEnd().split("\n").map((l) => JSON.parse(l));
}

/** Reads NDJSON lines one at a time, so a test can stop or watch mid-stream. */
function lineReader(res: Response) {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  return {
    async next(): Promise<Obj | undefined> {
      while (!buf.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) return undefined;
        buf += value;
      }
      const i = buf.indexOf("\n");
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      return JSON.parse(line);
    },
    cancel: () => reader.cancel(),
  };
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 3000) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** One HTTP/1.1 exchange over a raw socket, for headers fetch() will not let a test set (Host). */
async function rawHttp(port: number, head: string): Promise<{ status: number; body: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(head + "Connection: close\r\n\r\n"));
    let text = "";
    const buf = new Uint8Array(4096);
    for (let n; (n = await conn.read(buf)) !== null;) {
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    const [headers, body] = text.split("\r\n\r\n");
    return { status: Number(headers.split(" ")[1]), body };
  } finally {
    conn.close();
  }
}

async function ps(sim: OllamaSim): Promise<Obj[]> {
  return (await (await fetch(sim.url + "/api/ps")).json()).models;
}

const chat = (model: string, extra: Obj = {}) => ({
  model,
  messages: [{ role: "user", content: "say something" }],
  ...extra,
});

// --- wire shapes ------------------------------------------------------------------------------

Deno.test("a streamed chat sends NDJSON chunks and ends with done:true and its metrics", async () => {
  await withSim({}, async (sim) => {
    const chunks = await ndjson(await post(sim, "/api/chat", chat("tiny-a")));
    assert.equal(chunks.length, 9);
    for (const c of chunks.slice(0, -1)) {
      assert.deepEqual(Object.keys(c), ["model", "created_at", "message", "done"]);
      assert.equal(c.model, "tiny-a");
      assert.equal(c.done, false);
      assert.equal((c.message as Obj).role, "assistant");
      assert.ok(!Number.isNaN(Date.parse(c.created_at as string)));
    }
    const content = chunks.slice(0, -1).map((c) => (c.message as Obj).content).join("");
    assert.equal(content, simWords(8));
    const last = chunks.at(-1)!;
    assert.equal(last.done, true);
    assert.equal(last.done_reason, "stop");
    assert.deepEqual(last.message, { role: "assistant", content: "" });
    for (
      const k of [
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
      ]
    ) {
      assert.ok(Number.isInteger(last[k]) && (last[k] as number) > 0, `${k} is a positive integer`);
    }
    assert.equal(last.eval_count, 8);
    assert.ok((last.total_duration as number) >= (last.load_duration as number));
  });
});

Deno.test("generate chunks carry response, and its final chunk adds context and done_reason length", async () => {
  await withSim({}, async (sim) => {
    const body = { model: "tiny-b:latest", prompt: "hello world", options: { num_predict: 3 } };
    const chunks = await ndjson(await post(sim, "/api/generate", body));
    assert.equal(chunks.length, 4);
    assert.deepEqual(Object.keys(chunks[0]), ["model", "created_at", "response", "done"]);
    assert.equal(chunks.slice(0, -1).map((c) => c.response).join(""), "w1 w2 w3");
    const last = chunks.at(-1)!;
    assert.equal(last.model, "tiny-b:latest");
    assert.equal(last.response, "");
    assert.equal(last.done_reason, "length");
    assert.equal(last.eval_count, 3);
    assert.ok(Array.isArray(last.context) && last.context.every(Number.isInteger));
  });
});

Deno.test("stream:false answers one JSON object holding the whole content", async () => {
  await withSim({}, async (sim) => {
    const res = await post(sim, "/api/chat", chat("tiny-a", { stream: false }));
    assert.equal(res.headers.get("content-type"), "application/json; charset=utf-8");
    const body = await res.json();
    assert.equal(body.done, true);
    assert.deepEqual(body.message, { role: "assistant", content: simWords(8) });
    assert.equal(body.eval_count, 8);

    const gen = await post(sim, "/api/generate", { model: "tiny-a", prompt: "x", stream: false });
    const g = await gen.json();
    assert.equal(g.response, simWords(8));
    assert.ok(Array.isArray(g.context));
  });
});

Deno.test("think adds thinking to the chunks and tools are answered with a tool call", async () => {
  await withSim({}, async (sim) => {
    const [, thought] = await call(
      sim,
      "/api/chat",
      chat("tiny-a", { think: true, stream: false }),
    );
    assert.equal((thought.message as Obj).thinking, "t1 t2");
    assert.equal((thought.message as Obj).content, simWords(8));

    const streamed = await ndjson(
      await post(sim, "/api/generate", { model: "tiny-a", prompt: "x", think: true }),
    );
    assert.equal(streamed[0].thinking, "t1");

    const tools = [{ type: "function", function: { name: "get_weather", parameters: {} } }];
    const [, called] = await call(sim, "/api/chat", chat("tiny-a", { tools, stream: false }));
    assert.deepEqual((called.message as Obj).tool_calls, [
      { function: { name: "get_weather", arguments: {} } },
    ]);
    const afterTool = chat("tiny-a", { tools, stream: false });
    (afterTool.messages as Obj[]).push({
      role: "tool",
      content: "sunny",
      tool_name: "get_weather",
    });
    const [, answered] = await call(sim, "/api/chat", afterTool);
    assert.equal((answered.message as Obj).tool_calls, undefined);
    assert.equal((answered.message as Obj).content, simWords(8));
  });
});

Deno.test("repeatLimit: a looping answer stops after 31 identical chunks without done:true", async () => {
  await withSim({ repeatLimit: true, tokenMs: 0 }, async (sim) => {
    const long = { options: { num_predict: 40 } };
    const res = await post(sim, "/api/chat", chat("tiny-a", long));
    assert.equal(res.status, 200);
    const chunks = await ndjson(res); // the body ends cleanly, it is just short
    assert.equal(chunks.length, 31);
    assert.ok(chunks.every((c) => c.done === false));
    assert.equal(
      chunks.map((c) => (c.message as Obj).content).join(""),
      Array(31).fill("w1").join(" "),
    );

    const [status, whole] = await call(
      sim,
      "/api/chat",
      chat("tiny-a", { ...long, stream: false }),
    );
    assert.equal(status, 200);
    assert.deepEqual(Object.keys(whole), ["model", "created_at", "message", "done"]);
    assert.equal(whole.done, false);
    assert.equal((whole.message as Obj).content, Array(31).fill("w1").join(" "));

    const [, gen] = await call(sim, "/api/generate", {
      model: "tiny-a",
      prompt: "x",
      stream: false,
      ...long,
    });
    assert.deepEqual(Object.keys(gen), ["model", "created_at", "response", "done"]);
    assert.equal(gen.done, false);

    // 31 repeats are allowed: the answer completes.
    const [, short] = await call(
      sim,
      "/api/chat",
      chat("tiny-a", {
        stream: false,
        options: { num_predict: 31 },
      }),
    );
    assert.equal(short.done, true);
    assert.equal(short.eval_count, 31);
    assert.equal(sim.events.filter((e) => e.kind === "end").length, 4, "each one freed the model");
  });
  await withSim({ tokenMs: 0 }, async (sim) => {
    const [, body] = await call(
      sim,
      "/api/chat",
      chat("tiny-a", {
        stream: false,
        options: { num_predict: 40 },
      }),
    );
    assert.equal(body.done, true, "by default answers never repeat, so they always end");
    assert.equal((body.message as Obj).content, simWords(40));
  });
});

Deno.test("timestamps carry Go's nanoseconds and ps shows context_length and no VRAM", async () => {
  await withSim({}, async (sim) => {
    const goTime = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,8}[1-9])?Z$/;
    const chunks = await ndjson(await post(sim, "/api/chat", chat("tiny-a")));
    const stamps = chunks.map((c) => c.created_at as string);
    for (const t of stamps) {
      assert.match(t, goTime);
      assert.ok(!Number.isNaN(Date.parse(t)));
    }
    assert.ok(
      stamps.some((t) => /\.\d{4,}Z$/.test(t)),
      `finer than milliseconds: ${stamps.join(" ")}`,
    );
    const tags = (await (await fetch(sim.url + "/api/tags")).json()).models as Obj[];
    for (const m of tags) assert.match(m.modified_at as string, goTime);

    await call(sim, "/api/generate", { model: "tiny-b", prompt: "", options: { num_ctx: 2048 } });
    const rows = await ps(sim);
    assert.deepEqual(Object.keys(rows[0]), [
      "name",
      "model",
      "size",
      "digest",
      "details",
      "expires_at",
      "size_vram",
      "context_length",
    ]);
    const byName = Object.fromEntries(rows.map((m) => [m.name, m]));
    assert.equal(byName["tiny-a:latest"].context_length, 4096);
    assert.equal(byName["tiny-b:latest"].context_length, 2048);
    for (const m of rows) {
      assert.equal(m.size_vram, 0, "a CPU-only Ollama keeps nothing in VRAM");
      assert.match(m.expires_at as string, goTime);
    }
  });
});

Deno.test("root, version, tags, ps and show answer Ollama's shapes", async () => {
  await withSim({ version: "0.11.4" }, async (sim) => {
    const root = await fetch(sim.url + "/");
    assert.equal(await root.text(), "Ollama is running");
    const head = await fetch(sim.url + "/", { method: "HEAD" });
    assert.equal(head.status, 200);
    await head.body?.cancel();
    assert.deepEqual(await (await fetch(sim.url + "/api/version")).json(), { version: "0.11.4" });

    const tags = (await (await fetch(sim.url + "/api/tags")).json()).models as Obj[];
    assert.deepEqual(tags.map((m) => m.name), [
      "tiny-a:latest",
      "tiny-b:latest",
      "tiny-c:latest",
      "embed-e:latest",
    ]);
    assert.deepEqual(Object.keys(tags[0]), [
      "name",
      "model",
      "modified_at",
      "size",
      "digest",
      "details",
    ]);
    assert.match(tags[0].digest as string, /^[0-9a-f]{64}$/);
    assert.equal((tags[0].details as Obj).format, "gguf");

    assert.deepEqual(await ps(sim), []);
    await (await post(sim, "/api/generate", { model: "tiny-a", prompt: "" })).body?.cancel();
    const [loaded] = await ps(sim);
    assert.equal(loaded.name, "tiny-a:latest");
    assert.ok(Number.isInteger(loaded.size_vram));
    assert.ok(!Number.isNaN(Date.parse(loaded.expires_at as string)));

    const [, show] = await call(sim, "/api/show", { model: "tiny-a" });
    assert.deepEqual(show.capabilities, ["completion", "tools", "thinking"]);
    assert.equal(typeof show.modelfile, "string");
    const [, embedShow] = await call(sim, "/api/show", { name: "embed-e" });
    assert.deepEqual(embedShow.capabilities, ["embedding"]);

    const missing = await fetch(sim.url + "/api/nothing");
    assert.equal(missing.status, 404);
    assert.equal(await missing.text(), "404 page not found");
    const wrongMethod = await fetch(sim.url + "/api/chat");
    assert.equal(wrongMethod.status, 405);
    await wrongMethod.body?.cancel();
    assert.ok(sim.requests.some((r) => r.method === "POST" && r.path === "/api/show"));
  });
});

// --- errors -----------------------------------------------------------------------------------

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

// --- loading and residency --------------------------------------------------------------------

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

// --- embeddings -------------------------------------------------------------------------------

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

// --- Host and Origin --------------------------------------------------------------------------

Deno.test("a foreign Host or Origin gets 403 with an empty body", async () => {
  await withSim({}, async (sim) => {
    const foreign = await rawHttp(sim.port, "GET /api/version HTTP/1.1\r\nHost: example.com\r\n");
    assert.deepEqual(foreign, { status: 403, body: "" });
    for (const host of ["localhost:11434", "127.0.0.1", "10.1.2.3:80", "192.168.0.9", "[::1]:1"]) {
      const ok = await rawHttp(sim.port, `GET /api/version HTTP/1.1\r\nHost: ${host}\r\n`);
      assert.equal(ok.status, 200, `Host ${host} is allowed`);
    }
    const evil = await fetch(sim.url + "/api/tags", {
      headers: { origin: "https://evil.example" },
    });
    assert.equal(evil.status, 403);
    assert.equal(await evil.text(), "");
    const local = await fetch(sim.url + "/api/tags", {
      headers: { origin: "http://localhost:3000" },
    });
    assert.equal(local.status, 200);
    await local.body?.cancel();
  });
});

// --- faults -----------------------------------------------------------------------------------

Deno.test("failNext answers the next requests with the given status and error", async () => {
  await withSim({}, async (sim) => {
    sim.failNext(2, 500, "boom");
    assert.deepEqual(await call(sim, "/api/chat", chat("tiny-a")), [500, { error: "boom" }]);
    assert.deepEqual(await call(sim, "/api/generate", { model: "tiny-a", prompt: "x" }), [
      500,
      { error: "boom" },
    ]);
    const [ok] = await call(sim, "/api/chat", chat("tiny-a", { stream: false }));
    assert.equal(ok, 200);

    sim.failNext(1, 503, "busy", { path: "/api/generate" });
    assert.equal((await call(sim, "/api/chat", chat("tiny-a", { stream: false })))[0], 200);
    assert.deepEqual(await call(sim, "/api/generate", { model: "tiny-a", prompt: "x" }), [
      503,
      { error: "busy" },
    ]);
  });
});

Deno.test("dropNext closes the connection after the given number of chunks", async () => {
  await withSim({}, async (sim) => {
    sim.dropNext(1, { afterChunks: 3 });
    const lines = lineReader(await post(sim, "/api/chat", chat("tiny-a")));
    const got: Obj[] = [];
    await assert.rejects(async () => {
      for (let l; (l = await lines.next());) got.push(l);
    });
    assert.equal(got.length, 3);
    assert.ok(got.every((c) => c.done === false));

    sim.dropNext(1);
    await assert.rejects(post(sim, "/api/chat", chat("tiny-a")), "no response at all");
    const [status] = await call(sim, "/api/chat", chat("tiny-a", { stream: false }));
    assert.equal(status, 200, "the model is free again afterwards");
  });
});

Deno.test("stallNext keeps the connection open and the model busy until the client leaves", async () => {
  await withSim({}, async (sim) => {
    sim.stallNext(1, { afterChunks: 2 });
    const lines = lineReader(await post(sim, "/api/chat", chat("tiny-a")));
    assert.ok(await lines.next());
    assert.ok(await lines.next());
    const third = lines.next().then((c) => c ? "data" : "end", () => "error");
    const next = call(sim, "/api/chat", chat("tiny-a", { stream: false }));
    // Nothing is supposed to happen here, so this one wait is a bounded observation window.
    const window = new Promise((r) => setTimeout(() => r("silence"), 150));
    assert.equal(await Promise.race([third, window]), "silence");
    assert.equal(sim.events.filter((e) => e.kind === "start").length, 1, "the model stays busy");
    await lines.cancel();
    assert.equal((await next)[0], 200, "leaving frees the model for the next request");
    assert.notEqual(await third, "data", "no chunk came after the stall");
  });
});

Deno.test("stop releases the port and restart listens on it again with residency forgotten", async () => {
  await withSim({ tokenMs: 10, tokens: 100 }, async (sim) => {
    await call(sim, "/api/generate", { model: "tiny-a", prompt: "" });
    const lines = lineReader(await post(sim, "/api/chat", chat("tiny-a")));
    assert.ok(await lines.next());
    await sim.stop();
    await assert.rejects(async () => {
      while (await lines.next());
    }, "a stream in flight is cut");
    await assert.rejects(fetch(sim.url + "/"), "nothing listens");
    const squatter = Deno.listen({ hostname: "127.0.0.1", port: sim.port });
    squatter.close();

    await sim.restart({ keepResidency: true });
    assert.deepEqual(sim.resident(), ["tiny-a:latest"]);
    await sim.restart();
    assert.deepEqual(sim.resident(), []);
    assert.deepEqual(sim.unloads(), ["tiny-a:latest"]);
    assert.equal(await (await fetch(sim.url + "/")).text(), "Ollama is running");
    const short = { stream: false, options: { num_predict: 1 } };
    const [status] = await call(sim, "/api/chat", chat("tiny-a", short));
    assert.equal(status, 200);
    assert.deepEqual(sim.loads(), ["tiny-a:latest", "tiny-a:latest"]);
  });
});

// --- management -------------------------------------------------------------------------------

Deno.test("create, copy and delete change the model list; blobs check their digest", async () => {
  await withSim({}, async (sim) => {
    const names = async () =>
      ((await (await fetch(sim.url + "/api/tags")).json()).models as Obj[]).map((m) => m.name);
    const created = await ndjson(await post(sim, "/api/create", { model: "mine", from: "tiny-a" }));
    assert.deepEqual(created.at(-1), { status: "success" });
    assert.equal((await names())[0], "mine:latest");
    assert.equal(
      (await post(sim, "/api/copy", { source: "mine", destination: "copy" })).status,
      200,
    );
    assert.ok((await names()).includes("copy:latest"));
    const del = await fetch(sim.url + "/api/delete", {
      method: "DELETE",
      body: JSON.stringify({ model: "mine" }),
    });
    assert.equal(del.status, 200);
    await del.body?.cancel();
    assert.ok(!(await names()).includes("mine:latest"));
    const [status] = await call(sim, "/api/chat", chat("copy", { stream: false }));
    assert.equal(status, 200);

    const bytes = new TextEncoder().encode("GGUF tiny");
    const hex = Array.from(
      new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)),
      (b) => b.toString(16).padStart(2, "0"),
    ).join("");
    const blob = `${sim.url}/api/blobs/sha256:${hex}`;
    assert.equal((await fetch(blob, { method: "HEAD" })).status, 404);
    const up = await fetch(blob, { method: "POST", body: bytes });
    assert.equal(up.status, 201);
    await up.body?.cancel();
    assert.equal((await fetch(blob, { method: "HEAD" })).status, 200);
    const bad = await fetch(`${sim.url}/api/blobs/sha256:${"0".repeat(64)}`, {
      method: "POST",
      body: bytes,
    });
    assert.equal(bad.status, 400);
    assert.match((await bad.json()).error, /digest mismatch/);
  });
});

Deno.test("offline (the default), pull and push fail as Ollama without network does; online they succeed", async () => {
  await withSim({}, async (sim) => {
    const dns = (method: string, url: string) =>
      `${method} "${url}": dial tcp: lookup registry.ollama.ai: no such host`;
    const manifest = "https://registry.ollama.ai/v2/library/tiny-a/manifests/latest";
    const res = await post(sim, "/api/pull", { model: "tiny-a", stream: false });
    assert.equal(res.status, 500);
    assert.equal(res.headers.get("content-type"), "application/json");
    assert.deepEqual(await res.json(), { error: `pull model manifest: ${dns("Get", manifest)}` });
    assert.deepEqual(await ndjson(await post(sim, "/api/pull", { model: "someone/fresh:v2" })), [
      { status: "pulling manifest" },
      {
        error: `pull model manifest: ${
          dns("Get", "https://registry.ollama.ai/v2/someone/fresh/manifests/v2")
        }`,
      },
    ]);
    const [status, pushed] = await call(sim, "/api/push", { model: "tiny-a", stream: false });
    assert.equal(status, 500);
    assert.match(
      pushed.error as string,
      /^Head "https:\/\/registry\.ollama\.ai\/v2\/library\/tiny-a\/blobs\/sha256:[0-9a-f]{64}": dial tcp: lookup registry\.ollama\.ai: no such host$/,
    );
    const names = ((await (await fetch(sim.url + "/api/tags")).json()).models as Obj[])
      .map((m) => m.name);
    assert.ok(!names.includes("someone/fresh:v2"));
  });
  await withSim({ online: true }, async (sim) => {
    const [, pulled] = await call(sim, "/api/pull", { model: "fresh", stream: false });
    assert.deepEqual(pulled, { status: "success" });
    const [, pushed] = await call(sim, "/api/push", { model: "fresh", stream: false });
    assert.deepEqual(pushed, { status: "success" });
    const [status] = await call(sim, "/api/chat", chat("fresh", { stream: false }));
    assert.equal(status, 200);
  });
});

// --- CLI --------------------------------------------------------------------------------------

Deno.test({
  name: "the CLI prints its URL as one JSON line and exits cleanly on SIGTERM",
  ignore: Deno.permissions.querySync({ name: "run" }).state !== "granted",
  async fn() {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net",
        new URL("../sim/main.ts", import.meta.url).pathname,
        "--port",
        "0",
        "--models",
        "a,b",
        "--load-ms",
        "5",
      ],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    while (!out.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
    }
    const { listening } = JSON.parse(out);
    assert.match(listening, /^http:\/\/127\.0\.0\.1:\d+$/);
    const tags = await (await fetch(listening + "/api/tags")).json();
    assert.deepEqual(tags.models.map((m: Obj) => m.name), ["a:latest", "b:latest"]);
    child.kill("SIGTERM");
    await reader.cancel();
    assert.equal((await child.status).code, 0);
  },
});
