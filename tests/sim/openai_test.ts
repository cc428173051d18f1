// The simulator's OpenAI-compatible routes as a real Ollama 0.11.4 answers them (shared/ollama-api.md
// and openai/openai.go): models, chat completions and completions whole or as Server-Sent Events,
// embeddings, the middleware's translation to native requests, and errors in OpenAI's shape.

import assert from "node:assert/strict";
import { simWords } from "../../sim/mod.ts";
import { call, encoded, type Event, type Obj, openaiError, post, sse, withSim } from "./helpers.ts";

const user = [{ role: "user", content: "say something" }];
const chatBody = (extra: Obj = {}) => ({ model: "tiny-a", messages: user, ...extra });
const choice = (o: Obj) => (o.choices as Obj[])[0]!;
const dataOf = (events: Event[]) => events.filter((e): e is Obj => e !== "[DONE]");

Deno.test("GET /v1/models lists the models on disk and /v1/models/{model} answers under the id as asked", async () => {
  await withSim({ models: ["tiny-a", "someone/tiny-b:v2"] }, async (sim) => {
    const [status, list] = await encoded(await fetch(sim.url + "/v1/models")) as [
      number,
      { data: Obj[] },
    ];
    assert.equal(status, 200);
    const tags = (await (await fetch(sim.url + "/api/tags")).json()).models as Obj[];
    assert.deepEqual(list, {
      object: "list",
      data: tags.map((t) => ({
        id: t.name,
        object: "model",
        created: Math.floor(Date.parse(t.modified_at as string) / 1000),
        owned_by: t.name === "tiny-a:latest" ? "library" : "someone",
      })),
    });
    for (const id of ["tiny-a", "tiny-a:latest", "tiny-a%3Alatest"]) {
      const [, one] = await encoded(await fetch(`${sim.url}/v1/models/${id}`));
      assert.deepEqual(one, {
        id: decodeURIComponent(id),
        object: "model",
        created: list.data[0]!.created,
        owned_by: "library",
      }, "the id as asked");
    }
    assert.deepEqual(await encoded(await fetch(sim.url + "/v1/models/nope")), [
      404,
      openaiError("model 'nope' not found", "api_error"),
    ]);
    const post = await fetch(sim.url + "/v1/models", { method: "POST" });
    assert.equal(post.status, 405);
    await post.body?.cancel();
  });
  await withSim({ models: [] }, async (sim) => {
    const [, empty] = await encoded(await fetch(sim.url + "/v1/models"));
    assert.deepEqual(empty, { object: "list", data: null }, "Go's nil slice");
  });
});

Deno.test("a chat completion is one chat.completion object with the finish reason and usage", async () => {
  await withSim({}, async (sim) => {
    const [status, body] = await encoded(
      await post(sim, "/v1/chat/completions", chatBody({ model: "library/tiny-a", max_tokens: 3 })),
    );
    assert.equal(status, 200);
    assert.match(body.id as string, /^chatcmpl-\d{1,3}$/);
    assert.ok(Math.abs((body.created as number) - Date.now() / 1000) < 5);
    assert.deepEqual({ ...body, id: "", created: 0 }, {
      id: "",
      object: "chat.completion",
      created: 0,
      model: "library/tiny-a",
      system_fingerprint: "fp_ollama",
      choices: [{
        index: 0,
        message: { role: "assistant", content: "w1 w2 w3" },
        finish_reason: "length",
      }],
      usage: { prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 },
    });
    const [, stopped] = await encoded(await post(sim, "/v1/chat/completions", chatBody()));
    assert.deepEqual(choice(stopped).message, { role: "assistant", content: simWords(8) });
    assert.equal(choice(stopped).finish_reason, "stop");
  });
});

Deno.test("a streamed chat completion sends chunks, the finish reason on the last, then [DONE]", async () => {
  await withSim({}, async (sim) => {
    const events = await sse(
      await post(sim, "/v1/chat/completions", chatBody({ stream: true, max_tokens: 4 })),
    );
    assert.equal(events.at(-1), "[DONE]");
    const chunks = dataOf(events);
    assert.equal(chunks.length, 5, "four words, then the done chunk");
    const id = chunks[0]!.id as string;
    assert.match(id, /^chatcmpl-\d{1,3}$/);
    for (const c of chunks) {
      assert.deepEqual(Object.keys(c), [
        "id",
        "object",
        "created",
        "model",
        "system_fingerprint",
        "choices",
      ]);
      assert.equal(c.id, id);
      assert.equal(c.object, "chat.completion.chunk");
      assert.equal((choice(c).delta as Obj).role, "assistant");
    }
    const text = chunks.map((c) => (choice(c).delta as Obj).content).join("");
    assert.equal(text, simWords(4));
    assert.deepEqual(chunks.map((c) => choice(c).finish_reason), [
      null,
      null,
      null,
      null,
      "length",
    ]);

    const withUsage = await sse(
      await post(sim, "/v1/chat/completions", {
        ...chatBody({ stream: true, max_tokens: 2 }),
        stream_options: { include_usage: true },
      }),
    );
    const usage = withUsage.at(-2) as Obj;
    assert.deepEqual(usage.choices, []);
    assert.deepEqual(usage.usage, { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 });
    assert.equal(choice(withUsage.at(-3) as Obj).finish_reason, "length");
    assert.equal(withUsage.at(-1), "[DONE]");
  });
});

Deno.test("a completion is a text_completion, whole or streamed (with include_usage, zero usage until the last)", async () => {
  await withSim({}, async (sim) => {
    const [, whole] = await encoded(
      await post(sim, "/v1/completions", { model: "tiny-a", prompt: "hello there", max_tokens: 2 }),
    );
    assert.match(whole.id as string, /^cmpl-\d{1,3}$/);
    assert.equal(whole.object, "text_completion");
    assert.deepEqual(whole.choices, [{ text: "w1 w2", index: 0, finish_reason: "length" }]);
    assert.deepEqual(whole.usage, { prompt_tokens: 2, completion_tokens: 2, total_tokens: 4 });

    const events = await sse(
      await post(sim, "/v1/completions", {
        model: "tiny-a",
        prompt: "hello",
        stream: true,
        stream_options: { include_usage: true },
      }),
    );
    assert.equal(events.at(-1), "[DONE]");
    const chunks = dataOf(events);
    const last = chunks.at(-1)!;
    assert.deepEqual(last.choices, []);
    assert.deepEqual(last.usage, { prompt_tokens: 1, completion_tokens: 8, total_tokens: 9 });
    for (const c of chunks.slice(0, -1)) {
      assert.equal(c.object, "text_completion");
      assert.deepEqual(c.usage, { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 });
    }
    assert.equal(chunks.slice(0, -1).map((c) => choice(c).text).join(""), simWords(8));
    assert.equal(choice(chunks.at(-2)!).finish_reason, "stop");
  });
});

Deno.test("embeddings are a list of embedding objects with usage, the vectors /api/embed gives", async () => {
  await withSim({ dimensions: 4 }, async (sim) => {
    const [status, body] = await encoded(
      await post(sim, "/v1/embeddings", { model: "embed-e", input: ["hello", "world"] }),
    );
    assert.equal(status, 200);
    const [, native] = await call(sim, "/api/embed", {
      model: "embed-e",
      input: ["hello", "world"],
    });
    const vectors = native.embeddings as number[][];
    assert.deepEqual(body, {
      object: "list",
      data: vectors.map((embedding, index) => ({ object: "embedding", embedding, index })),
      model: "embed-e",
      usage: { prompt_tokens: 2, total_tokens: 2 },
    });
    const [, one] = await encoded(
      await post(sim, "/v1/embeddings", { model: "embed-e", input: "" }),
    );
    assert.equal((one.data as Obj[]).length, 1, 'input "" is one empty input');
    for (const input of [undefined, null, []]) {
      assert.deepEqual(
        await encodedOrGin(await post(sim, "/v1/embeddings", { model: "embed-e", input })),
        [400, openaiError("invalid input", "invalid_request_error")],
      );
    }
    assert.deepEqual(
      await encoded(await post(sim, "/v1/embeddings", { model: "nope", input: "x" })),
      [404, openaiError('model "nope" not found, try pulling it first', "api_error")],
    );
  });
});

/** An error written by gin's AbortWithStatusJSON: JSON with its charset, no trailing newline. */
async function encodedOrGin(res: Response): Promise<[number, Obj]> {
  assert.equal(res.headers.get("content-type"), "application/json; charset=utf-8");
  const text = await res.text();
  assert.ok(!text.endsWith("\n"));
  return [res.status, JSON.parse(text)];
}

Deno.test("the middleware's own errors are 400 invalid_request_error with Go's texts", async () => {
  await withSim({}, async (sim) => {
    const invalid = (message: string) => [400, openaiError(message, "invalid_request_error")];
    const cases: [path: string, body: unknown, message: string][] = [
      ["/v1/chat/completions", '{"model":', "unexpected EOF"],
      ["/v1/chat/completions", "", "EOF"],
      ["/v1/chat/completions", "{bad", "invalid character 'b' looking for beginning of value"],
      ["/v1/chat/completions", { model: "tiny-a", messages: [] }, "[] is too short - 'messages'"],
      ["/v1/chat/completions", { model: "tiny-a" }, "[] is too short - 'messages'"],
      [
        "/v1/chat/completions",
        { model: "tiny-a", messages: "hi" },
        "json: cannot unmarshal string into Go struct field ChatCompletionRequest.messages of type []openai.Message",
      ],
      [
        "/v1/chat/completions",
        chatBody({ max_tokens: 1.5 }),
        "json: cannot unmarshal number 1.5 into Go struct field ChatCompletionRequest.max_tokens of type int",
      ],
      [
        "/v1/chat/completions",
        chatBody({ stream_options: { include_usage: "yes" } }),
        "json: cannot unmarshal string into Go struct field StreamOptions.stream_options.include_usage of type bool",
      ],
      [
        "/v1/chat/completions",
        { model: "tiny-a", messages: [{ role: "user", content: null }] },
        "invalid message content type: <nil>",
      ],
      [
        "/v1/chat/completions",
        { model: "tiny-a", messages: [{ role: "user", content: [{ type: "video" }] }] },
        "invalid message format",
      ],
      [
        "/v1/chat/completions",
        {
          model: "tiny-a",
          messages: [{
            role: "user",
            content: [{ type: "image_url", image_url: { url: "https://example.com/a.png" } }],
          }],
        },
        "invalid image input",
      ],
      [
        "/v1/chat/completions",
        {
          model: "tiny-a",
          messages: [{
            role: "assistant",
            tool_calls: [{ function: { name: "f", arguments: "{not json" } }],
          }],
        },
        "invalid tool call arguments",
      ],
      [
        "/v1/completions",
        { model: "tiny-a", prompt: "x", stop: ["a", 1] },
        "invalid type for 'stop' field: float64",
      ],
      [
        "/v1/completions",
        { model: "tiny-a", prompt: ["x"] },
        "json: cannot unmarshal array into Go struct field CompletionRequest.prompt of type string",
      ],
      [
        "/v1/embeddings",
        "[]",
        "json: cannot unmarshal array into Go value of type openai.EmbedRequest",
      ],
    ];
    for (const [path, body, message] of cases) {
      assert.deepEqual(await encodedOrGin(await post(sim, path, body)), invalid(message), message);
    }
    assert.deepEqual(sim.loads(), [], "nothing reached the scheduler");
  });
});

Deno.test("errors from the native handler keep their status and become api_error", async () => {
  await withSim({ capabilities: { "tiny-b": ["completion"] } }, async (sim) => {
    const apiError = (status: number, message: string) => [
      status,
      openaiError(message, "api_error"),
    ];
    const cases: [path: string, body: Obj, status: number, message: string][] = [
      [
        "/v1/chat/completions",
        chatBody({ model: "nope" }),
        404,
        'model "nope" not found, try pulling it first',
      ],
      ["/v1/chat/completions", chatBody({ model: "" }), 400, "model is required"],
      ["/v1/completions", { model: "nope", prompt: "x" }, 404, "model 'nope' not found"],
      [
        "/v1/completions",
        { model: "tiny-b", prompt: "x", suffix: "y" },
        400,
        "registry.ollama.ai/library/tiny-b:latest does not support insert",
      ],
      [
        "/v1/chat/completions",
        chatBody({ model: "embed-e" }),
        400,
        '"embed-e" does not support chat',
      ],
    ];
    for (const [path, body, status, message] of cases) {
      assert.deepEqual(await encoded(await post(sim, path, body)), apiError(status, message));
    }
    // reasoning.effort is a think level, which only gpt-oss takes (chat checks once loaded).
    assert.deepEqual(
      await encoded(
        await post(sim, "/v1/chat/completions", chatBody({ reasoning: { effort: "low" } })),
      ),
      apiError(400, 'think value "low" is not supported for this model'),
    );
    // Without an effort Ollama dereferences nil: gin's recovery answers 500 with no body.
    const panicked = await post(sim, "/v1/chat/completions", chatBody({ reasoning: {} }));
    assert.equal(panicked.status, 500);
    assert.equal(await panicked.text(), "");
    const responses = await post(sim, "/v1/responses", chatBody());
    assert.equal(responses.status, 404);
    assert.equal(responses.headers.get("content-type"), "text/plain; charset=utf-8");
    assert.equal(await responses.text(), "404 page not found");
    const get = await fetch(sim.url + "/v1/chat/completions");
    assert.equal(get.status, 405);
    await get.body?.cancel();
  });
});
