// The record counters behind a working job's progress events (ADR-0017): they count what the
// relay passes, split wherever the network split it, without parsing it or changing a byte.

import assert from "node:assert/strict";
import { countLines, eventCounter, recordCounter } from "../src/worker/progress.ts";
import { relay } from "../src/worker/relay.ts";

const enc = new TextEncoder();

/** Every way to cut `text` in two, and one byte at a time. */
function splits(text: string): Uint8Array[][] {
  const bytes = enc.encode(text);
  const out = [[bytes], Array.from(bytes, (b) => new Uint8Array([b]))];
  for (let i = 1; i < bytes.byteLength; i++) out.push([bytes.subarray(0, i), bytes.subarray(i)]);
  return out;
}

Deno.test("NDJSON is counted a record per line, however it is cut", () => {
  const text = '{"message":{"content":"a"}}\n{"message":{"content":"b"}}\n{"done":true}\n';
  for (const chunks of splits(text)) {
    assert.equal(chunks.reduce((n, c) => n + countLines(c), 0), 3);
  }
});

Deno.test("Server-Sent Events are counted at each blank line, LF or CRLF, across chunks", () => {
  for (
    const text of ["data: {}\n\ndata: {}\n\ndata: [DONE]\n\n", "data: 1\r\n\r\ndata: 2\r\n\r\n"]
  ) {
    const expected = text.includes("\r") ? 2 : 3;
    for (const chunks of splits(text)) {
      const count = eventCounter();
      assert.equal(chunks.reduce((n, c) => n + count(c), 0), expected, JSON.stringify(text));
    }
  }
});

Deno.test("the counter follows the answer's content type; a whole answer has none", () => {
  assert.equal(recordCounter("application/x-ndjson"), countLines);
  assert.equal(typeof recordCounter("text/event-stream; charset=utf-8"), "function");
  assert.equal(recordCounter("application/json; charset=utf-8"), undefined);
  assert.equal(recordCounter(null), undefined);
});

Deno.test("the relay shows each chunk to its counter as the caller gets it, unchanged", async () => {
  const chunks = ['{"a":1}\n{"b"', ":2}\n", '{"done":true}\n'];
  let i = 0;
  const body = new ReadableStream<Uint8Array>({
    pull: (c) => i < chunks.length ? c.enqueue(enc.encode(chunks[i++])) : c.close(),
  });
  let counted = 0;
  const r = relay(body, { idleTimeout: 1000, onChunk: (c) => counted += countLines(c) });
  const seen: string[] = [];
  for await (const c of r.readable) seen.push(new TextDecoder().decode(c));
  assert.deepEqual(seen, chunks);
  assert.equal(counted, 3);
  await r.done;
});
