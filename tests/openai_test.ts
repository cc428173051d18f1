// The OpenAI-compatible surface through a real foreman process in front of the Ollama simulator,
// driven by the official `openai` npm client, unchanged, and by plain fetch where the wire itself
// is the point: byte-faithful relays, chunk timing, error shapes and statuses.

import assert from "node:assert/strict";
import OpenAI from "openai";
import { type ForemanProcess, startForeman, waitFor } from "../harness/foreman.ts";
import { HostileTarget } from "./support/hostile_target.ts";
import { type SimOptions, type Stack, startStack } from "./support/stack.ts";

/** The stack with an embedder, and loads slow enough to be seen. */
function stack(sim: SimOptions = {}, args: string[] = []): Promise<Stack> {
  return startStack({ sim: { loadMs: 20, ...sim }, args: ["--embed-model", "embed-e", ...args] });
}

/** The official client pointed at foreman, the token as its API key; no retries to blur a test. */
function sdk(fm: ForemanProcess, apiKey = fm.token): OpenAI {
  return new OpenAI({ baseURL: `${fm.url}/v1`, apiKey, maxRetries: 0 });
}

async function getJob(fm: ForemanProcess, id: string): Promise<Record<string, unknown>> {
  return await (await fetch(`${fm.url}/jobs/${id}`, { headers: fm.headers() })).json();
}

async function metric(fm: ForemanProcess, sample: string): Promise<number> {
  const text = await (await fetch(`${fm.url}/metrics`, { headers: fm.headers() })).text();
  const line = text.split("\n").find((l) => l.startsWith(sample + " "));
  return line === undefined ? 0 : Number(line.slice(sample.length + 1));
}

const user = [{ role: "user" as const, content: "hello" }];

Deno.test("the official openai client works through foreman unchanged: models, chat, completions, embeddings", async () => {
  const { fm, sim, close } = await stack();
  try {
    const client = sdk(fm);
    const tags = await (await fetch(`${sim.url}/api/tags`)).json();
    const listed = (await client.models.list()).data;
    assert.deepEqual(
      listed.map((m) => m.id).sort(),
      tags.models.map((m: { name: string }) => m.name).sort(),
    );
    for (const m of listed) {
      const tag = tags.models.find((t: { name: string }) => t.name === m.id);
      assert.deepEqual(m, {
        id: m.id,
        object: "model",
        created: Math.floor(Date.parse(tag.modified_at) / 1000),
        owned_by: "library",
      });
    }
    assert.equal((await client.models.retrieve("tiny-a")).id, "tiny-a", "the id as asked");

    const { data: chat, response } = await client.chat.completions.create({
      model: "tiny-a",
      messages: user,
      max_tokens: 4,
    }).withResponse();
    assert.equal(chat.object, "chat.completion");
    assert.equal(chat.choices[0]!.message.content, "w1 w2 w3 w4");
    assert.equal(chat.usage!.completion_tokens, 4);
    const id = response.headers.get("x-foreman-job-id")!;
    assert.match(id, /^[0-9A-Z]{26}$/);
    const job = await getJob(fm, id);
    assert.deepEqual([job.kind, job.endpoint, job.state], ["sync", "openai.chat", "done"]);

    const stream = await client.chat.completions.create({
      model: "tiny-a",
      messages: user,
      max_tokens: 3,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? "").join(""), "w1 w2 w3");
    assert.deepEqual(chunks.at(-1)!.choices, [], "include_usage: a last chunk with the usage");
    assert.equal(chunks.at(-1)!.usage!.completion_tokens, 3);

    const completion = await client.completions.create({
      model: "tiny-b",
      prompt: "once",
      max_tokens: 2,
    });
    assert.equal(completion.object, "text_completion");
    assert.equal(completion.choices[0]!.text, "w1 w2");
    let text = "";
    for await (
      const c of await client.completions.create({
        model: "tiny-b",
        prompt: "once",
        max_tokens: 2,
        stream: true,
      })
    ) text += c.choices[0]?.text ?? "";
    assert.equal(text, "w1 w2");

    // Ollama 0.11.4 ignores encoding_format and always sends floats, which the client would read
    // as base64 if it asked for that, its default: callers ask for floats (docs/api.md).
    const embedded = await client.embeddings.create({
      model: "embed-e",
      input: ["a", "b"],
      encoding_format: "float",
    });
    const direct = await (await fetch(`${sim.url}/api/embed`, {
      method: "POST",
      body: JSON.stringify({ model: "embed-e", input: ["a", "b"] }),
    })).json();
    assert.deepEqual(embedded.data.map((e) => e.embedding), direct.embeddings);

    assert.equal(
      await metric(fm, 'foreman_jobs_finished_total{outcome="done",endpoint="openai.chat"}'),
      2,
    );
    assert.equal(
      await metric(fm, 'foreman_jobs_finished_total{outcome="done",endpoint="openai.completions"}'),
      2,
    );
    assert.equal(await metric(fm, 'foreman_job_run_seconds_count{endpoint="openai.chat"}'), 2);
    assert.equal(
      await metric(fm, 'foreman_embed_requests_total{route="/v1/embeddings",status="200"}'),
      1,
    );
    assert.equal(sim.maxConcurrent(), 1, "one inference at a time");
  } finally {
    await close();
  }
});

Deno.test("the openai client shows foreman's own refusals as readable errors of the right class", async () => {
  const { fm, close } = await stack();
  try {
    const client = sdk(fm);
    const refused = async (call: () => Promise<unknown>) => {
      try {
        await call();
      } catch (err) {
        return err as InstanceType<typeof OpenAI.APIError>;
      }
      throw new Error("the call succeeded");
    };

    const unauthorized = await refused(() => sdk(fm, "wrong").models.list());
    assert.ok(unauthorized instanceof OpenAI.AuthenticationError);
    assert.equal(unauthorized.message, "401 invalid bearer token");
    assert.equal(unauthorized.type, "authentication_error");
    assert.equal(unauthorized.headers?.get("www-authenticate"), 'Bearer realm="foreman"');

    const unknown = await refused(() =>
      client.chat.completions.create({ model: "nope", messages: user })
    );
    assert.ok(unknown instanceof OpenAI.NotFoundError);
    assert.equal(unknown.message, '404 model "nope" not found, try pulling it first');
    assert.equal(unknown.type, "invalid_request_error");
    const retrieved = await refused(() => client.models.retrieve("nope"));
    assert.ok(retrieved instanceof OpenAI.NotFoundError);

    const empty = await refused(() =>
      client.chat.completions.create({ model: "tiny-a", messages: [] })
    );
    assert.ok(empty instanceof OpenAI.BadRequestError);
    assert.equal(empty.message, "400 messages must not be empty");
    const fractional = await refused(() =>
      client.completions.create({ model: "tiny-a", prompt: "x", max_tokens: 1.5 })
    );
    assert.ok(fractional instanceof OpenAI.BadRequestError);
    assert.equal(fractional.message, "400 invalid request body: max_tokens must be an integer");

    const responses = await refused(() => client.responses.create({ model: "tiny-a", input: "x" }));
    assert.ok(responses instanceof OpenAI.NotFoundError);
    assert.match(responses.message, /^404 no route for POST \/v1\/responses: foreman serves POST /);

    const jobs = await (await fetch(`${fm.url}/jobs`, { headers: fm.headers() })).json();
    assert.deepEqual(jobs.jobs, [], "nothing refused reached the queue");
  } finally {
    await close();
  }
});

/** The answer with the parts Ollama makes up per request (id, created) blanked out. */
function stable(text: string): string {
  return text.replace(/"id":"(chatcmpl|cmpl)-\d+"/g, '"id":"$1-N"').replace(
    /"created":\d+/g,
    '"created":0',
  );
}

Deno.test("/v1 answers are the target's bytes, relayed event by event as the target sends them", async () => {
  const { fm, sim, close } = await stack({ tokenMs: 30 });
  try {
    const body = (stream: boolean) =>
      JSON.stringify({ model: "tiny-a", messages: user, max_tokens: 8, stream });
    const direct = async (stream: boolean) =>
      await (await fetch(`${sim.url}/v1/chat/completions`, {
        method: "POST",
        body: body(stream),
      })).text();

    const whole = await fetch(`${fm.url}/v1/chat/completions`, {
      method: "POST",
      headers: fm.headers(),
      body: body(false),
    });
    assert.equal(whole.headers.get("content-type"), "application/json");
    assert.equal(stable(await whole.text()), stable(await direct(false)));

    const res = await fetch(`${fm.url}/v1/chat/completions`, {
      method: "POST",
      headers: fm.headers(),
      body: body(true),
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/event-stream");
    assert.match(res.headers.get("x-foreman-job-id")!, /^[0-9A-Z]{26}$/);
    const arrivals: number[] = [];
    let text = "";
    for await (const chunk of res.body!.pipeThrough(new TextDecoderStream())) {
      arrivals.push(performance.now());
      text += chunk;
    }
    assert.ok(text.endsWith("data: [DONE]\n\n"));
    assert.equal(stable(text), stable(await direct(true)));
    assert.ok(arrivals.length >= 5, `${arrivals.length} reads`);
    assert.ok(arrivals.at(-1)! - arrivals[0]! > 150, "relayed as produced, not buffered");
  } finally {
    await close();
  }
});

Deno.test("aborting a streamed /v1 call in the openai client cancels its job and the target's request", async () => {
  const { fm, sim, close } = await stack({ tokenMs: 40 });
  try {
    const abort = new AbortController();
    const { data: stream, response } = await sdk(fm).chat.completions.create(
      { model: "tiny-a", messages: user, max_tokens: 500, stream: true },
      { signal: abort.signal },
    ).withResponse();
    const id = response.headers.get("x-foreman-job-id")!;
    let seen = 0;
    // The client ends its iteration quietly on an abort.
    for await (const _ of stream) if (++seen === 2) abort.abort();
    assert.equal(seen, 2);
    await waitFor(async () => (await getJob(fm, id)).state === "cancelled", {
      what: "the job to be cancelled",
    });
    assert.equal((await getJob(fm, id)).error, "caller went away");
    // 500 tokens take the simulator 20 s: a generation that ended sooner was cancelled.
    await waitFor(
      () => sim.events.some((e) => e.kind === "end" && e.path === "/v1/chat/completions"),
      { what: "the target's generation to end early" },
    );
  } finally {
    await close();
  }
});

/** The keys of OpenAI's error object, in its order. */
const ERROR_KEYS = ["message", "type", "param", "code"];

Deno.test("bad /v1 input gets an OpenAI-shaped error with the right status and never reaches the queue", async () => {
  const { fm, sim, close } = await stack({}, ["--max-body", "1KiB"]);
  try {
    const chat = (extra: Record<string, unknown>) =>
      JSON.stringify({ model: "tiny-a", messages: user, ...extra });
    const CHAT = "/v1/chat/completions";
    const cases: [string, string, BodyInit | undefined, number, RegExp][] = [
      ["POST", CHAT, "{not json", 400, /^invalid JSON in request body/],
      ["POST", CHAT, "", 400, /^missing request body$/],
      ["POST", CHAT, "[1,2]", 400, /expected a JSON object/],
      ["POST", CHAT, JSON.stringify({ messages: user }), 400, /^model is required$/],
      ["POST", CHAT, chat({ model: 7 }), 400, /^model must be a string$/],
      ["POST", CHAT, JSON.stringify({ model: "tiny-a" }), 400, /^messages is required/],
      ["POST", CHAT, chat({ messages: [] }), 400, /^messages must not be empty$/],
      ["POST", CHAT, chat({ messages: "hi" }), 400, /messages must be an array/],
      ["POST", CHAT, chat({ messages: [{ content: "x" }] }), 400, /messages\[0\] must be/],
      ["POST", CHAT, chat({ stream: "yes" }), 400, /stream must be true or false/],
      ["POST", CHAT, chat({ stream_options: "all" }), 400, /stream_options must be an object/],
      [
        "POST",
        CHAT,
        chat({ stream_options: { include_usage: "yes" } }),
        400,
        /include_usage must be true or false/,
      ],
      ["POST", CHAT, chat({ max_tokens: 1.5 }), 400, /max_tokens must be an integer/],
      ["POST", CHAT, chat({ temperature: "hot" }), 400, /temperature must be a number/],
      ["POST", CHAT, chat({ stop: 5 }), 400, /stop must be a string or an array/],
      ["POST", CHAT, chat({ tools: {} }), 400, /tools must be an array/],
      ["POST", CHAT, chat({ model: "nope" }), 404, /^model "nope" not found/],
      [
        "POST",
        CHAT,
        chat({ messages: [{ role: "user", content: "x".repeat(2000) }] }),
        413,
        /too large/,
      ],
      ["POST", "/v1/completions", JSON.stringify({ model: "tiny-a" }), 400, /^prompt is required$/],
      [
        "POST",
        "/v1/completions",
        JSON.stringify({ model: "tiny-a", prompt: ["a", "b"] }),
        400,
        /prompt must be a string/,
      ],
      ["POST", "/v1/embeddings", JSON.stringify({ input: "x" }), 400, /^model is required$/],
      ["GET", CHAT, undefined, 405, /^method not allowed: use POST$/],
      ["GET", "/v1/models/nope", undefined, 404, /^model "nope" not found/],
      ["GET", "/v1/models/%zz", undefined, 400, /bad percent-encoding/],
      ["POST", "/v1/responses", "{}", 404, /^no route for POST \/v1\/responses: foreman serves/],
      ["GET", "/v1", undefined, 404, /^no route for GET \/v1: foreman serves/],
    ];
    for (const [method, path, body, status, re] of cases) {
      const res = await fetch(fm.url + path, { method, headers: fm.headers(), body });
      const json = await res.json();
      const what = `${method} ${path} ${String(body).slice(0, 40)}: ${JSON.stringify(json)}`;
      assert.equal(res.status, status, what);
      assert.deepEqual(Object.keys(json), ["error"], what);
      assert.deepEqual(Object.keys(json.error), ERROR_KEYS, what);
      assert.match(json.error.message, re, what);
      assert.equal(
        json.error.type,
        status === 405 || status < 500 ? "invalid_request_error" : "api_error",
      );
      assert.deepEqual([json.error.param, json.error.code], [null, null]);
    }
    const jobs = await (await fetch(`${fm.url}/jobs`, { headers: fm.headers() })).json();
    assert.deepEqual(jobs.jobs, [], "no job was queued");
    assert.ok(!sim.requests.some((r) => r.path.startsWith("/v1/")), "nothing reached the target");
  } finally {
    await close();
  }
});

Deno.test("a full queue and an unreachable target answer /v1 callers in OpenAI's shape", async () => {
  const { fm, sim, close } = await stack({ tokenMs: 20 }, ["--max-queue", "1"]);
  try {
    const post = (path: string, body: unknown, signal?: AbortSignal) =>
      fetch(fm.url + path, {
        method: "POST",
        headers: fm.headers(),
        body: JSON.stringify(body),
        signal,
      });
    const health = async () =>
      (await (await fetch(`${fm.url}/healthz`, { headers: fm.headers() })).json()).queue;
    const hold = new AbortController();
    const running = post("/v1/chat/completions", {
      model: "tiny-a",
      messages: user,
      max_tokens: 300,
    }, hold.signal).catch(() => undefined);
    await waitFor(async () => (await health()).running === 1);
    const queued = post("/v1/chat/completions", { model: "tiny-a", messages: user }, hold.signal)
      .catch(() => undefined);
    await waitFor(async () => (await health()).queued === 1);
    const full = await post("/v1/completions", { model: "tiny-a", prompt: "x" });
    assert.equal(full.status, 503);
    assert.deepEqual(await full.json(), {
      error: {
        message: "server busy, please try again: the queue holds 1 jobs (FOREMAN_MAX_QUEUE)",
        type: "api_error",
        param: null,
        code: null,
      },
    });
    hold.abort();
    await Promise.all([running, queued]);

    await sim.stop();
    const down = await post("/v1/embeddings", { model: "embed-e", input: "x" });
    assert.equal(down.status, 503);
    const { error } = await down.json();
    assert.match(error.message, /^target unavailable: Cannot reach the target/);
    assert.equal(error.type, "api_error");
    const cached = await sdk(fm).models.list();
    assert.ok(cached.data.length > 0, "the model list still comes from the inventory");
  } finally {
    await close();
  }
});

Deno.test("a target cut mid-stream fails the /v1 job, and the openai client raises foreman's error event", async () => {
  const { fm, sim, close } = await stack({ tokenMs: 5 });
  try {
    sim.dropNext(1, { afterChunks: 3, path: "/v1/chat/completions" });
    const { data: stream, response } = await sdk(fm).chat.completions.create({
      model: "tiny-a",
      messages: user,
      max_tokens: 20,
      stream: true,
    }).withResponse();
    const contents: string[] = [];
    const err = await (async () => {
      try {
        for await (const c of stream) contents.push(c.choices[0]?.delta.content ?? "");
      } catch (e) {
        return e;
      }
    })();
    assert.ok(err instanceof OpenAI.APIError, String(err));
    assert.match(err.message, /^foreman: /);
    assert.deepEqual(contents, ["w1", " w2", " w3"], "what the target sent came first");
    const job = await getJob(fm, response.headers.get("x-foreman-job-id")!);
    assert.equal(job.state, "failed");
    assert.equal(job.attempt, 1, "bytes reached the caller: never run twice");
    assert.match(String(job.error), /^the target stopped mid-response/);
  } finally {
    await close();
  }
});

Deno.test("a /v1 stream without data: [DONE], or with an error event, fails its job; the caller keeps the target's bytes", async () => {
  const target = HostileTarget.start();
  const fm = await startForeman({ ollamaUrl: target.url, args: ["--poll-interval", "1s"] });
  try {
    const events = (...data: string[]) =>
      new Response(data.map((d) => `data: ${d}\n\n`).join(""), {
        headers: { "content-type": "text/event-stream" },
      });
    const chunk = JSON.stringify({
      id: "chatcmpl-1",
      object: "chat.completion.chunk",
      choices: [{ index: 0, delta: { role: "assistant", content: "one" }, finish_reason: null }],
    });
    const empty = chunk.replace('"one"', '""');
    const cases: [Response, string, RegExp][] = [
      // What Ollama 0.11.4 writes when the native stream fails: an empty chunk, then nothing.
      [events(chunk, empty), `data: ${chunk}\n\ndata: ${empty}\n\n`, /without data: \[DONE\]$/],
      [
        events(chunk, JSON.stringify({ error: { message: "runner died", type: "api_error" } })),
        `data: ${chunk}\n\ndata: {"error":{"message":"runner died","type":"api_error"}}\n\n`,
        /^runner died$/,
      ],
      [events(chunk, "[DONE]"), `data: ${chunk}\n\ndata: [DONE]\n\n`, /^$/],
    ];
    for (const [answer, bytes, error] of cases) {
      target.on("/v1/chat/completions", () => answer);
      const res = await fetch(`${fm.url}/v1/chat/completions`, {
        method: "POST",
        headers: fm.headers(),
        body: JSON.stringify({ model: "tiny", messages: user, stream: true }),
      });
      assert.equal(res.status, 200);
      assert.equal(await res.text(), bytes, "relayed as sent, nothing added");
      const job = await getJob(fm, res.headers.get("x-foreman-job-id")!);
      assert.equal(job.state, error.source === "^$" ? "done" : "failed");
      assert.match(String(job.error ?? ""), error);
    }
    assert.ok(
      target.requests("/v1/chat/completions").every((r) => !("keep_alive" in JSON.parse(r.body))),
      "a /v1 body goes out without keep_alive, which Ollama's /v1 ignores",
    );
  } finally {
    await fm.stop();
    await target.close();
  }
});
