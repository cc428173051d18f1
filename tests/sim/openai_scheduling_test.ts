// The simulator's /v1 routes share the native scheduler: the default keep-alive replaces whatever a
// model was pinned to, one generation at a time per model across both surfaces, loads and swaps,
// the faults the crash suites use, the repeat guard, and translated sampling options.

import assert from "node:assert/strict";
import { simWords } from "../../sim/mod.ts";
import {
  call,
  chat,
  encoded,
  eventReader,
  type Obj,
  openaiError,
  post,
  ps,
  sse,
  waitFor,
  withSim,
} from "./helpers.ts";

const user = [{ role: "user", content: "say something" }];
const v1Chat = (model: string, extra: Obj = {}) => ({ model, messages: user, ...extra });

/** Milliseconds until the model's expires_at in /api/ps. */
async function expiresIn(sim: Parameters<typeof ps>[0], model: string): Promise<number> {
  const row = (await ps(sim)).find((m) => m.name === model);
  assert.ok(row, `${model} is loaded`);
  return Date.parse(row.expires_at as string) - Date.now();
}

Deno.test("a /v1 request ignores keep_alive and resets a pinned model's expiry to the default", async () => {
  await withSim({}, async (sim) => {
    await call(sim, "/api/generate", { model: "tiny-a", prompt: "", keep_alive: -1 });
    assert.ok(await expiresIn(sim, "tiny-a:latest") > 100 * 365 * 86_400_000, "pinned forever");
    const [status] = await encoded(
      await post(sim, "/v1/chat/completions", v1Chat("tiny-a", { keep_alive: "1h" })),
    );
    assert.equal(status, 200);
    const left = await expiresIn(sim, "tiny-a:latest");
    assert.ok(Math.abs(left - 300_000) < 5_000, `5 minutes from now, not pinned (${left} ms)`);

    // The other /v1 routes that schedule do the same; a native keep_alive pins again.
    await call(sim, "/api/embed", { model: "embed-e", input: "x", keep_alive: "2h" });
    await encoded(await post(sim, "/v1/embeddings", { model: "embed-e", input: "x" }));
    assert.ok(Math.abs(await expiresIn(sim, "embed-e:latest") - 300_000) < 5_000);
    await call(sim, "/api/generate", { model: "tiny-a", prompt: "", keep_alive: -1 });
    await encoded(await post(sim, "/v1/completions", { model: "tiny-a", prompt: "x" }));
    assert.ok(Math.abs(await expiresIn(sim, "tiny-a:latest") - 300_000) < 5_000);
  });
});

Deno.test("with a short default keep-alive, a model pinned forever unloads after a /v1 request", async () => {
  await withSim({ defaultKeepAlive: "300ms" }, async (sim) => {
    await call(sim, "/api/generate", { model: "tiny-a", prompt: "", keep_alive: -1 });
    await encoded(await post(sim, "/v1/chat/completions", v1Chat("tiny-a", { keep_alive: -1 })));
    await waitFor("tiny-a to expire", () => sim.resident().length === 0);
    assert.deepEqual(sim.unloads(), ["tiny-a:latest"]);
  });
});

Deno.test("/v1 and native requests share one slot per model and one scheduler", async () => {
  await withSim({ tokenMs: 3, tokens: 10, maxLoaded: 1 }, async (sim) => {
    await Promise.all([
      call(sim, "/api/chat", chat("tiny-a", { stream: false })),
      post(sim, "/v1/chat/completions", v1Chat("tiny-a")).then(encoded),
      post(sim, "/v1/completions", { model: "tiny-a", prompt: "x" }).then(encoded),
    ]);
    assert.equal(sim.maxConcurrent("tiny-a"), 1, "one generation at a time, whatever the surface");
    const [status] = await encoded(await post(sim, "/v1/chat/completions", v1Chat("tiny-b")));
    assert.equal(status, 200);
    assert.deepEqual(sim.loads(), ["tiny-a:latest", "tiny-b:latest"]);
    assert.deepEqual(sim.unloads(), ["tiny-a:latest"], "the swap evicted tiny-a");
    const paths = sim.events.filter((e) => e.kind === "start").map((e) => e.path);
    assert.deepEqual(
      new Set(paths),
      new Set(["/api/chat", "/v1/chat/completions", "/v1/completions"]),
    );
  });
});

Deno.test("failNext on a /v1 path answers its status in OpenAI's shape; by default it takes /v1 too", async () => {
  await withSim({}, async (sim) => {
    sim.failNext(1, 500, "boom", { path: "/v1/chat/completions" });
    assert.equal((await call(sim, "/api/chat", chat("tiny-a", { stream: false })))[0], 200);
    assert.deepEqual(
      await encoded(await post(sim, "/v1/chat/completions", v1Chat("tiny-a"))),
      [500, openaiError("boom", "api_error")],
    );
    sim.failNext(1, 503, "busy");
    assert.deepEqual(
      await encoded(await post(sim, "/v1/completions", { model: "tiny-a", prompt: "x" })),
      [503, openaiError("busy", "api_error")],
    );
    assert.equal((await encoded(await post(sim, "/v1/completions", { model: "tiny-a" })))[0], 200);
  });
});

Deno.test("stallNext and dropNext cut a /v1 stream after the given number of chunks", async () => {
  await withSim({}, async (sim) => {
    sim.stallNext(1, { afterChunks: 2, path: "/v1/chat/completions" });
    const stream = v1Chat("tiny-a", { stream: true });
    const events = eventReader(await post(sim, "/v1/chat/completions", stream));
    assert.equal(((await events.next()) as Obj).object, "chat.completion.chunk");
    assert.ok(await events.next());
    const third = events.next().then((e) => e ? "data" : "end", () => "error");
    const next = post(sim, "/v1/chat/completions", v1Chat("tiny-a")).then(encoded);
    // Nothing is supposed to happen here, so this one wait is a bounded observation window.
    const window = new Promise((r) => setTimeout(() => r("silence"), 150));
    assert.equal(await Promise.race([third, window]), "silence");
    assert.equal(sim.events.filter((e) => e.kind === "start").length, 1, "the model stays busy");
    await events.cancel();
    assert.equal((await next)[0], 200, "leaving frees the model for the next request");

    sim.dropNext(1, { afterChunks: 3, path: "/v1/chat/completions" });
    const dropped = eventReader(await post(sim, "/v1/chat/completions", stream));
    const got: unknown[] = [];
    await assert.rejects(async () => {
      for (let e; (e = await dropped.next());) got.push(e);
    });
    assert.equal(got.length, 3);
    sim.dropNext(1, { path: "/v1/chat/completions" });
    await assert.rejects(post(sim, "/v1/chat/completions", stream), "no response at all");
    assert.equal(
      (await encoded(await post(sim, "/v1/chat/completions", v1Chat("tiny-a"))))[0],
      200,
    );
  });
});

Deno.test("a looping answer ends the /v1 stream without [DONE] and the whole answer has no finish reason", async () => {
  await withSim({ repeatLimit: true, tokenMs: 0 }, async (sim) => {
    const long = v1Chat("tiny-a", { max_tokens: 40 });
    const events = await sse(await post(sim, "/v1/chat/completions", { ...long, stream: true }));
    assert.equal(events.length, 31);
    assert.ok(!events.includes("[DONE]"));
    const [, whole] = await encoded(await post(sim, "/v1/chat/completions", long));
    const [first] = whole.choices as Obj[];
    assert.ok(first);
    assert.equal(first.finish_reason, null);
    assert.deepEqual(whole.usage, { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 });
  });
});

Deno.test("the middleware turns sampling options, stop, response_format and tools into a native request", async () => {
  await withSim({}, async (sim) => {
    const tools = [{ type: "function", function: { name: "get_weather", parameters: {} } }];
    await encoded(
      await post(sim, "/v1/chat/completions", {
        ...v1Chat("tiny-a"),
        max_tokens: 5,
        temperature: 0.2,
        seed: 7,
        stop: ["x", 1],
        frequency_penalty: 0.5,
        presence_penalty: 0.25,
        response_format: { type: "json_object" },
        keep_alive: "1h",
        tools,
      }),
    );
    assert.deepEqual(sim.requests.at(-1)!.native, {
      model: "tiny-a",
      messages: user,
      stream: false,
      format: "json",
      tools,
      options: {
        frequency_penalty: 0.5,
        num_predict: 5,
        presence_penalty: 0.25,
        seed: 7,
        stop: ["x"],
        temperature: 0.2,
        top_p: 1,
      },
    });
    await encoded(await post(sim, "/v1/completions", { model: "tiny-a", prompt: "p", stop: "s" }));
    assert.deepEqual(sim.requests.at(-1)!.native, {
      model: "tiny-a",
      prompt: "p",
      suffix: "",
      system: "",
      template: "",
      stream: false,
      options: { frequency_penalty: 0, presence_penalty: 0, stop: ["s"], temperature: 1, top_p: 1 },
    });
    const schema = { type: "object" };
    const [, json] = await encoded(
      await post(sim, "/v1/chat/completions", {
        ...v1Chat("tiny-a", { max_tokens: 2 }),
        response_format: { type: "json_schema", json_schema: { schema } },
      }),
    );
    assert.deepEqual(sim.requests.at(-1)!.native!.format, schema);
    assert.deepEqual(((json.choices as Obj[])[0]!.message as Obj).content, '{"text":"w1 w2"}');
  });
});

Deno.test("tool calls come back with ids, arguments as JSON text and finish reason tool_calls", async () => {
  await withSim({}, async (sim) => {
    const tools = [{ type: "function", function: { name: "get_weather", parameters: {} } }];
    const [, whole] = await encoded(
      await post(sim, "/v1/chat/completions", v1Chat("tiny-a", { tools })),
    );
    const [first] = whole.choices as Obj[];
    assert.ok(first);
    assert.equal(first.finish_reason, "tool_calls");
    const [call0] = (first.message as Obj).tool_calls as Obj[];
    assert.ok(call0);
    assert.match(call0.id as string, /^call_[a-z0-9]{8}$/);
    assert.deepEqual({ ...call0, id: "" }, {
      id: "",
      index: 0,
      type: "function",
      function: { name: "get_weather", arguments: "{}" },
    });
    const events = await sse(
      await post(sim, "/v1/chat/completions", v1Chat("tiny-a", { tools, stream: true })),
    );
    const chunks = events.filter((e): e is Obj => e !== "[DONE]");
    assert.equal((chunks.at(-1)!.choices as Obj[])[0]!.finish_reason, "tool_calls");

    // A tool's answer, named by its call's id, is answered with words.
    const messages = [
      ...user,
      { role: "assistant", content: null, tool_calls: [{ ...call0 }] },
      { role: "tool", content: "sunny", tool_call_id: call0.id },
    ];
    const [, answered] = await encoded(
      await post(sim, "/v1/chat/completions", { model: "tiny-a", messages, tools }),
    );
    assert.equal(((answered.choices as Obj[])[0]!.message as Obj).content, simWords(8));
    const native = sim.requests.at(-1)!.native!.messages as Obj[];
    assert.deepEqual(native.at(-1), { role: "tool", content: "sunny", tool_name: "get_weather" });
    assert.deepEqual(native[1]!.tool_calls, [{ function: { name: "get_weather", arguments: {} } }]);
  });
});
