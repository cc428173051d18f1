// The relay's limits, without a socket: a caller that stops reading, an abort while nobody reads,
// a line or an answer past the cap. The hostile-target suite checks the same through foreman.

import assert from "node:assert/strict";
import { within } from "../src/async.ts";
import { AnswerTooLargeError, TargetClient } from "../src/ollama/client.ts";
import { CallerStoppedReadingError, relay } from "../src/worker/relay.ts";

const enc = new TextEncoder();

/** A body of `count` copies of `chunk`, as fast as it is pulled; records a cancel. */
function source(chunk: string, count: number) {
  const bytes = enc.encode(chunk);
  let sent = 0;
  let cancelled = false;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (sent++ >= count) c.close();
      else c.enqueue(bytes);
    },
    cancel() {
      cancelled = true;
    },
  }, { highWaterMark: 0 });
  return { stream, cancelled: () => cancelled };
}

Deno.test("a caller that reads nothing for the idle timeout is gone and the target's body is cancelled", async () => {
  // More than the relay reads ahead: the target is held up by the caller, never done.
  const src = source('{"a":1}\n', 1e9);
  const r = relay(src.stream, { idleTimeout: 50 });
  const reader = r.readable.getReader();
  // Taken before the caller's last read, so the idle time counts from no earlier than this.
  const t0 = performance.now();
  await reader.read();
  // The deadline only turns a relay that never gives up into a failure instead of a hang.
  const gone = await within(r.done.then(() => "done", (err) => err), 10_000);
  const ms = performance.now() - t0;
  assert.ok(gone instanceof CallerStoppedReadingError, `the relay ended with ${gone}`);
  assert.ok(ms >= 50, `gone after ${ms} ms, before the idle timeout`);
  assert.equal(src.cancelled(), true);
  await assert.rejects(reader.read(), CallerStoppedReadingError);
});

Deno.test("an abort ends the relay at once while the caller is not reading, and later reads get what was read, then the error line", async () => {
  const src = source('{"a":1}\n', 1e9);
  const abort = new AbortController();
  const r = relay(src.stream, { idleTimeout: 60_000, signal: abort.signal });
  const reader = r.readable.getReader();
  await reader.read();
  abort.abort(new Error("cancelled by a DELETE"));
  await assert.rejects(r.done, /cancelled by a DELETE/);
  assert.equal(src.cancelled(), true);
  let rest = "";
  for (let next = await reader.read(); !next.done; next = await reader.read()) {
    rest += new TextDecoder().decode(next.value);
  }
  const lines = rest.trim().split("\n");
  assert.deepEqual(JSON.parse(lines.pop()!), { error: "foreman: cancelled by a DELETE" });
  assert.ok(lines.every((l) => l === '{"a":1}'), "before it, whole lines of the answer");
});

Deno.test("a line longer than the cap ends the relay with an error line of its own, holding no more than the cap", async () => {
  const src = source("x".repeat(1024), 100);
  const r = relay(src.stream, { idleTimeout: 60_000, maxLine: 4096 });
  let text = "";
  for await (const c of r.readable) text += new TextDecoder().decode(c);
  await assert.rejects(r.done, AnswerTooLargeError);
  assert.equal(src.cancelled(), true);
  const lines = text.split("\n");
  assert.equal(lines[0]!.length, 4096, "the cut line, relayed up to the cap");
  assert.match(JSON.parse(lines[1]!).error, /larger than 4096 bytes.*FOREMAN_MAX_ANSWER/);
  assert.equal(lines[2], "");
});

Deno.test("a whole answer is read up to the cap, then its reading stops and the target's body is cancelled", async () => {
  const capped = new TargetClient({
    baseUrl: "http://127.0.0.1:9",
    timeout: 60_000,
    maxAnswer: 10_000,
  });
  const src = source("y".repeat(1024), 100);
  await assert.rejects(
    capped.readBytes(new Response(src.stream), { path: "/api/chat" }),
    AnswerTooLargeError,
  );
  assert.equal(src.cancelled(), true);
  const exact = new TargetClient({ baseUrl: "http://127.0.0.1:9", timeout: 60_000, maxAnswer: 10 });
  const whole = await exact.readBytes(new Response(source("z", 10).stream), { path: "/api/chat" });
  assert.equal(new TextDecoder().decode(whole), "z".repeat(10));
});

Deno.test("a whole answer from a byte stream is read into one growing buffer, and a declared size past the cap is refused unread", async () => {
  const client = new TargetClient({ baseUrl: "http://127.0.0.1:9", timeout: 60_000 });
  const parts = Array.from({ length: 40 }, (_, i) => `${i}:${"w".repeat(1000)}\n`);
  let next = 0;
  const body = new ReadableStream({
    type: "bytes",
    pull(c: ReadableByteStreamController) {
      if (next < parts.length) return c.enqueue(enc.encode(parts[next++]));
      c.close();
      c.byobRequest?.respond(0); // a reader's pending read ends with the stream, as fetch's does
    },
  });
  const whole = await client.readBytes(new Response(body), { path: "/api/chat" });
  assert.equal(new TextDecoder().decode(whole), parts.join(""));

  const capped = new TargetClient({
    baseUrl: "http://127.0.0.1:9",
    timeout: 60_000,
    maxAnswer: 100,
  });
  const src = source("x", 1000);
  const declared = new Response(src.stream, { headers: { "content-length": "1000" } });
  await assert.rejects(capped.readBytes(declared, { path: "/api/chat" }), AnswerTooLargeError);
  assert.equal(src.cancelled(), true);
});
