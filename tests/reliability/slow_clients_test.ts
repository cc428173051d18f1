// Slow clients, on raw sockets against a real foreman: a request body that stops arriving is given
// up on after FOREMAN_BODY_TIMEOUT with a 408.

import assert from "node:assert/strict";
import { startForeman } from "../support/foreman.ts";
import { OllamaSim } from "../support/ollama_sim.ts";
import { report } from "./support.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

interface Held {
  /** Everything the peer sent before it closed or the wait ran out. */
  text: string;
  /** Milliseconds from the last byte written to the peer's close, or null if it stayed open. */
  closedAfter: number | null;
  /** Milliseconds from the last byte written to the first byte received, or null for none. */
  firstByteAfter: number | null;
  /** The same from the request head, written first. */
  firstByteAfterHead: number | null;
  status: number | null;
}

/**
 * Writes `head` on a new connection (then `trickle` one byte at a time, `every` ms apart), and
 * reads until the peer closes or `wait` ms pass.
 */
async function hold(
  port: number,
  head: string,
  options: { wait: number; trickle?: string; every?: number; untilResponse?: boolean },
): Promise<Held> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(enc.encode(head));
  const headSentAt = performance.now();
  let sentAt = headSentAt;
  let open = true;
  const trickling = (async () => {
    for (const ch of options.trickle ?? "") {
      await new Promise((r) => setTimeout(r, options.every ?? 100));
      if (!open) return;
      await conn.write(enc.encode(ch)).catch(() => open = false);
      sentAt = performance.now();
    }
  })();
  let text = "";
  let firstByteAfter: number | null = null;
  let firstByteAfterHead: number | null = null;
  let closedAfter: number | null = null;
  const buf = new Uint8Array(65536);
  const deadline = performance.now() + options.wait;
  try {
    while (performance.now() < deadline) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const n = await Promise.race([
        conn.read(buf).catch(() => null),
        new Promise<"wait">((r) => timer = setTimeout(r, deadline - performance.now(), "wait")),
      ]);
      clearTimeout(timer);
      if (n === "wait") break;
      if (n === null) {
        closedAfter = performance.now() - sentAt;
        break;
      }
      firstByteAfter ??= performance.now() - sentAt;
      firstByteAfterHead ??= performance.now() - headSentAt;
      text += dec.decode(buf.subarray(0, n));
      if (options.untilResponse && complete(text)) break;
    }
  } finally {
    open = false;
    try {
      conn.close();
    } catch {
      // Closed by the peer already.
    }
    await trickling;
  }
  const status = /^HTTP\/1\.1 (\d{3})/.exec(text);
  return {
    text,
    closedAfter,
    firstByteAfter,
    firstByteAfterHead,
    status: status ? Number(status[1]) : null,
  };
}

/** Whether `text` holds a whole response with a Content-Length body. */
function complete(text: string): boolean {
  const end = text.indexOf("\r\n\r\n");
  const length = /\r\ncontent-length: (\d+)\r\n/i.exec(text.slice(0, end + 2));
  return end >= 0 && length !== null && enc.encode(text.slice(end + 4)).length >= Number(length[1]);
}

function bodyOf(text: string): string {
  return text.slice(text.indexOf("\r\n\r\n") + 4);
}

const ms = (n: number | null) => n === null ? null : Math.round(n);

Deno.test("a request body that stops arriving gets a 408 in Ollama's shape after FOREMAN_BODY_TIMEOUT", async () => {
  const sim = await OllamaSim.start({ loadMs: 5, tokenMs: 1 });
  const fm = await startForeman({ ollamaUrl: sim.url, args: ["--body-timeout", "500ms"] });
  try {
    const head = (path: string) =>
      `POST ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${fm.token}\r\n` +
      `Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{"model":`;
    const stalled: Record<string, number | null> = {};
    for (const path of ["/api/chat", "/api/generate", "/api/embed", "/api/show", "/jobs"]) {
      const r = await hold(fm.port, head(path), { wait: 10_000, untilResponse: true });
      assert.equal(r.status, 408, `${path}: ${r.text || "no answer in 10 s"}`);
      assert.deepEqual(JSON.parse(bodyOf(r.text)), {
        error:
          "request body not received in time: 9 of 200 bytes after 0.5s (FOREMAN_BODY_TIMEOUT)",
      });
      assert.ok(r.firstByteAfter! >= 450, `${path} answered after ${r.firstByteAfter} ms`);
      stalled[path] = ms(r.firstByteAfter);
    }

    // The deadline is for the whole body: a byte every 100 ms does not keep it alive.
    const trickled = await hold(fm.port, head("/jobs"), {
      wait: 10_000,
      trickle: '"tiny-a"'.padEnd(60, " "),
      every: 100,
      untilResponse: true,
    });
    assert.equal(trickled.status, 408, trickled.text || "no answer in 10 s");
    assert.match(
      JSON.parse(bodyOf(trickled.text)).error,
      /^request body not received in time: \d+ of 200 bytes/,
    );

    // What Deno.serve does with the connection after the 408: kept while the client keeps it.
    const after = await hold(fm.port, head("/api/chat"), { wait: 1500 });

    // Nothing was queued, and foreman serves the next caller at once.
    const jobs = await (await fetch(fm.url + "/jobs", { headers: fm.headers() })).json();
    assert.deepEqual(jobs.jobs, []);
    const ok = await fetch(fm.url + "/api/chat", {
      method: "POST",
      headers: fm.headers(),
      body: JSON.stringify({ model: "tiny-a", stream: false, messages: [] }),
    });
    assert.equal(ok.status, 200);
    await ok.body?.cancel();
    await report("stalled request body", {
      body_timeout_ms: 500,
      answered_408_after_ms: stalled,
      trickled_408_after_ms: ms(trickled.firstByteAfterHead),
      connection_after_408: after.closedAfter === null
        ? "open while the client holds it"
        : "closed",
    });
  } finally {
    await fm.stop();
    await sim.close();
  }
});
