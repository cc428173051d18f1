// What the simulator's own tests share: a simulator per test, requests, NDJSON readers, a bounded
// wait, and a raw HTTP exchange for headers fetch() will not send. Run the tests with
// `deno test --allow-net tests/sim/` (the CLI test also needs --allow-run).

import assert from "node:assert/strict";
import { OllamaSim, type SimOptions } from "../../sim/mod.ts";

export type Obj = Record<string, unknown>;

export async function withSim(
  opts: SimOptions,
  fn: (sim: OllamaSim) => Promise<void>,
): Promise<void> {
  const sim = await OllamaSim.start({ loadMs: 10, tokenMs: 1, ...opts });
  try {
    await fn(sim);
  } finally {
    await sim.close();
  }
}

export function post(sim: OllamaSim, path: string, body: unknown, headers: HeadersInit = {}) {
  return fetch(sim.url + path, {
    method: "POST",
    headers,
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

export async function call(sim: OllamaSim, path: string, body: unknown): Promise<[number, Obj]> {
  const res = await post(sim, path, body);
  return [res.status, await res.json()];
}

export async function ndjson(res: Response): Promise<Obj[]> {
  assert.equal(res.headers.get("content-type"), "application/x-ndjson");
  const text = await res.text();
  assert.ok(text.endsWith("\n"), "every NDJSON line ends with a newline");
  return text.trimEnd().split("\n").map((l) => JSON.parse(l));
}

/** Reads NDJSON lines one at a time, so a test can stop or watch mid-stream. */
export function lineReader(res: Response) {
  return splitReader(res, "\n", (line) => JSON.parse(line));
}

/** A Server-Sent Event's data: the parsed JSON, or "[DONE]". */
export type Event = Obj | "[DONE]";

/** Reads Server-Sent Events one at a time. */
export function eventReader(res: Response) {
  return splitReader(res, "\n\n", parseEvent);
}

/** Every event of a whole text/event-stream body, each `data: …` and a blank line. */
export async function sse(res: Response): Promise<Event[]> {
  assert.equal(res.headers.get("content-type"), "text/event-stream");
  const text = await res.text();
  assert.ok(text.endsWith("\n\n"), "every event ends with a blank line");
  return text.slice(0, -2).split("\n\n").map(parseEvent);
}

function parseEvent(event: string): Event {
  assert.ok(event.startsWith("data: "), `an event is one data line: ${event}`);
  const data = event.slice("data: ".length);
  return data === "[DONE]" ? data : JSON.parse(data);
}

function splitReader<T>(res: Response, sep: string, parse: (part: string) => T) {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  return {
    async next(): Promise<T | undefined> {
      while (!buf.includes(sep)) {
        const { value, done } = await reader.read();
        if (done) return undefined;
        buf += value;
      }
      const i = buf.indexOf(sep);
      const part = buf.slice(0, i);
      buf = buf.slice(i + sep.length);
      return parse(part);
    },
    cancel: () => reader.cancel(),
  };
}

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 3000) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** One HTTP/1.1 exchange over a raw socket, for headers fetch() will not let a test set (Host). */
export async function rawHttp(
  port: number,
  head: string,
): Promise<{ status: number; body: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(head + "Connection: close\r\n\r\n"));
    let text = "";
    const buf = new Uint8Array(4096);
    for (let n; (n = await conn.read(buf)) !== null;) {
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    const [headers = "", body = ""] = text.split("\r\n\r\n");
    return { status: Number(headers.split(" ")[1]), body };
  } finally {
    conn.close();
  }
}

export async function ps(sim: OllamaSim): Promise<Obj[]> {
  return (await (await fetch(sim.url + "/api/ps")).json()).models;
}

/** Go's json.Encoder output from a /v1 writer: one line of JSON and a newline. */
export async function encoded(res: Response): Promise<[number, Obj]> {
  assert.equal(res.headers.get("content-type"), "application/json");
  const text = await res.text();
  assert.ok(text.endsWith("}\n"), `one JSON line: ${text}`);
  return [res.status, JSON.parse(text)];
}

/** An OpenAI-shaped error body. */
export const openaiError = (message: string, type: string) => ({
  error: { message, type, param: null, code: null },
});

export const chat = (model: string, extra: Obj = {}) => ({
  model,
  messages: [{ role: "user", content: "say something" }],
  ...extra,
});
