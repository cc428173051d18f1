import assert from "node:assert/strict";
import { BearerAuth } from "../src/http/auth.ts";
import { TargetClient, TargetUnreachableError } from "../src/ollama/client.ts";
import { concat } from "../src/bytes.ts";
import { CallerGoneError, relay, StallError } from "../src/worker/relay.ts";

const enc = new TextEncoder();

function source(chunks: string[], options: { stallAfter?: number } = {}) {
  let i = 0;
  let cancelled = false;
  const stream = new ReadableStream<Uint8Array>({
    async pull(c) {
      if (options.stallAfter !== undefined && i >= options.stallAfter) {
        await new Promise((r) => setTimeout(r, 1000));
        return;
      }
      if (i >= chunks.length) return c.close();
      c.enqueue(enc.encode(chunks[i++]));
    },
    cancel() {
      cancelled = true;
    },
  });
  return { stream, cancelled: () => cancelled };
}

Deno.test("the relay passes the bytes through unchanged and reports the last line", async () => {
  const chunks = ['{"a":1}\n{"b"', ":2}\n", '{"done":true,"eval_count":3}\n'];
  const r = relay(source(chunks).stream, { idleTimeout: 1000 });
  const seen: string[] = [];
  for await (const c of r.readable) seen.push(new TextDecoder().decode(c));
  assert.equal(seen.join(""), chunks.join(""));
  assert.equal(await r.done, '{"done":true,"eval_count":3}');
  assert.equal(r.sent(), chunks.join("").length);
});

Deno.test("the last line is found when every chunk is one line", async () => {
  const chunks = Array.from({ length: 50 }, (_, i) => `{"i":${i}}\n`);
  assert.equal(await relayLast(chunks), '{"i":49}');
  assert.equal(await relayLast(['{"whole":', '"object"}']), '{"whole":"object"}');
});

async function relayLast(chunks: string[]): Promise<string> {
  const r = relay(source(chunks).stream, { idleTimeout: 1000 });
  for await (const _ of r.readable) { /* drain */ }
  return await r.done;
}

Deno.test("a silent target counts as stalled and the caller gets a final error line", async () => {
  const src = source(['{"a":1}\n'], { stallAfter: 1 });
  const r = relay(src.stream, { idleTimeout: 50 });
  let text = "";
  for await (const c of r.readable) text += new TextDecoder().decode(c);
  await assert.rejects(r.done, StallError);
  const lines = text.trim().split("\n");
  assert.match(JSON.parse(lines.at(-1)!).error, /sent nothing for 50 ms/);
  // A whole answer read for a job: the same silence is the target's stall.
  const client = new TargetClient({ baseUrl: "http://127.0.0.1:9", timeout: 50 });
  const whole = new Response(source([], { stallAfter: 0 }).stream);
  await assert.rejects(
    client.readBytes(whole, { path: "/api/chat" }),
    (err) => err instanceof TargetUnreachableError && /sent nothing for 50 ms/.test(err.message),
  );
});

Deno.test("an SSE relay reports the last event's data line, blank lines and split events included", async () => {
  const last = async (chunks: string[]) => {
    const r = relay(source(chunks).stream, { idleTimeout: 1000, framing: "sse" });
    for await (const _ of r.readable) { /* drain */ }
    return await r.done;
  };
  assert.equal(await last(['data: {"a":1}\n\n', "data: [DONE]\n\n"]), "data: [DONE]");
  assert.equal(await last(['data: {"a":1}\n\ndata: [DO', "NE]\n", "\n"]), "data: [DONE]");
  assert.equal(await last(['data: {"a":1}\n\n', "\n"]), 'data: {"a":1}');
});

Deno.test("a stalled SSE stream ends with an OpenAI-shaped error event of its own", async () => {
  for (const first of ['data: {"a":1}\n\n', 'data: {"a":1}\n', 'data: {"a"']) {
    const r = relay(source([first], { stallAfter: 1 }).stream, {
      idleTimeout: 50,
      framing: "sse",
    });
    let text = "";
    for await (const c of r.readable) text += new TextDecoder().decode(c);
    await assert.rejects(r.done, StallError);
    const events = text.split("\n\n").filter((e) => e !== "");
    assert.equal(events.length, 2, `after ${JSON.stringify(first)}: ${JSON.stringify(text)}`);
    assert.ok(text.endsWith("\n\n"));
    const error = JSON.parse(events[1]!.replace(/^data: /, "")).error;
    assert.match(error.message, /^foreman: the target sent nothing for 50 ms/);
    assert.deepEqual([error.type, error.param, error.code], ["api_error", null, null]);
  }
});

Deno.test("a bytes relay keeps no line, and a failure aborts the caller's stream", async () => {
  const doc = ['{"id":"chatcmpl-1",\n', '"choices":[]}\n'];
  const r = relay(source(doc).stream, { idleTimeout: 1000, framing: "bytes" });
  let text = "";
  for await (const c of r.readable) text += new TextDecoder().decode(c);
  assert.equal(text, doc.join(""));
  assert.equal(await r.done, "");
  const cut = relay(source(['{"id":'], { stallAfter: 1 }).stream, {
    idleTimeout: 50,
    framing: "bytes",
  });
  await assert.rejects(async () => {
    for await (const _ of cut.readable) { /* drain */ }
  }, StallError);
  await assert.rejects(cut.done, StallError);
});

Deno.test("a caller that is behind gets everything read so far as one chunk, and a waiting one each chunk at once", async () => {
  // A target far faster than its caller: the relay reads ahead, and each pull takes all of it.
  const lines = Array.from({ length: 2000 }, (_, i) => `{"i":${i}}\n`);
  const r = relay(source(lines).stream, { idleTimeout: 1000 });
  const reader = r.readable.getReader();
  const got: Uint8Array[] = [];
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    got.push(value);
    await new Promise((resolve) => setTimeout(resolve, 5)); // the caller's write takes a while
  }
  assert.equal(new TextDecoder().decode(concat(got)), lines.join(""), "the bytes, unchanged");
  assert.ok(got.length < lines.length / 10, `${got.length} writes for ${lines.length} chunks`);
  assert.equal(await r.done, '{"i":1999}');

  // A target slower than its caller: every chunk is handed over as soon as it is read.
  const slow = new ReadableStream<Uint8Array>({
    async pull(c) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      if (sentSlow === 5) return c.close();
      c.enqueue(enc.encode(`{"n":${sentSlow++}}\n`));
    },
  }, { highWaterMark: 0 });
  let sentSlow = 0;
  const chunks: string[] = [];
  for await (const c of relay(slow, { idleTimeout: 1000 }).readable) {
    chunks.push(new TextDecoder().decode(c));
  }
  assert.deepEqual(chunks, [0, 1, 2, 3, 4].map((n) => `{"n":${n}}\n`));
});

Deno.test("the relay is done when the target's answer ends, while its caller still takes the last bytes", async () => {
  const r = relay(source(['{"a":1}\n', '{"done":true}\n']).stream, { idleTimeout: 1000 });
  assert.equal(await r.done, '{"done":true}', "done before the caller read a byte");
  let text = "";
  for await (const c of r.readable) text += new TextDecoder().decode(c);
  assert.equal(text, '{"a":1}\n{"done":true}\n');
});

Deno.test("the caller going away cancels the target's stream", async () => {
  const src = source(['{"a":1}\n', '{"b":2}\n', '{"c":3}\n']);
  const r = relay(src.stream, { idleTimeout: 1000 });
  const reader = r.readable.getReader();
  await reader.read();
  await reader.cancel("bye");
  await assert.rejects(r.done, CallerGoneError);
  assert.equal(src.cancelled(), true);
});

Deno.test("bearer auth accepts any configured token and nothing else", () => {
  const auth = new BearerAuth(["new-token", "old-token"]);
  assert.equal(auth.check("Bearer new-token"), true);
  assert.equal(auth.check("bearer old-token"), true);
  assert.equal(auth.check("Bearer other"), false);
  assert.equal(auth.check("Bearer new-token, Bearer old-token"), false, "two credentials");
  assert.equal(auth.check("Basic bmV3LXRva2Vu"), false);
  assert.equal(auth.check("Bearer "), false);
  assert.equal(auth.check(null), false);
  assert.equal(new BearerAuth([]).check(null), true, "unauthenticated mode");
});
