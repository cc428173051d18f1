// The simulator's wire shapes against real HTTP on 127.0.0.1: NDJSON chunks, stream:false, thinking
// and tool calls, the repeat guard, Go's timestamps, and the read-only routes.

import assert from "node:assert/strict";
import { simWords } from "../../sim/mod.ts";
import { call, chat, ndjson, type Obj, post, ps, withSim } from "./helpers.ts";

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
    assert.deepEqual(Object.keys(chunks[0]!), ["model", "created_at", "response", "done"]);
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
    assert.equal(streamed[0]!.thinking, "t1");

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
    assert.deepEqual(Object.keys(rows[0]!), [
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
    assert.deepEqual(Object.keys(tags[0]!), [
      "name",
      "model",
      "modified_at",
      "size",
      "digest",
      "details",
    ]);
    assert.match(tags[0]!.digest as string, /^[0-9a-f]{64}$/);
    assert.equal((tags[0]!.details as Obj).format, "gguf");

    assert.deepEqual(await ps(sim), []);
    await (await post(sim, "/api/generate", { model: "tiny-a", prompt: "" })).body?.cancel();
    const [loaded] = await ps(sim);
    assert.ok(loaded);
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
