// Watching a job through a real foreman process (ADR-0017): the event stream of
// GET /jobs/{id}/events and the long poll of GET /jobs/{id}?wait=, in front of the simulator or a
// hostile target, read back against the outbox rows foreman wrote. What only an internal timing
// reaches (the heartbeat, the drain bound) runs against foreman's daemon started in this process,
// on a real port and a real SQLite file, with those timings shortened.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { type ForemanProcess, startForeman, waitFor } from "../harness/foreman.ts";
import { OllamaSim } from "../sim/mod.ts";
import { startDaemon, type Tuning } from "../src/app.ts";
import { loadConfig } from "../src/config.ts";
import { createLogger } from "../src/log.ts";
import { report } from "./reliability/support.ts";
import { HostileTarget } from "./support/hostile_target.ts";
import { openStore } from "./support/store.ts";

/** What the helpers below need of a foreman: a process, or a daemon in this process. */
type Foreman = Pick<ForemanProcess, "url" | "port" | "token" | "dbPath" | "headers">;

const enc = new TextEncoder();

interface Sse {
  id?: string;
  event: string;
  data: string;
}

interface Watch {
  status: number;
  headers: Headers;
  events: Sse[];
  /** Settles when the stream ends: its end, or the error that cut it. */
  ended: Promise<"end" | "error">;
  stop(): void;
}

/** Opens a job's event stream and collects its events as they arrive. */
async function watch(
  fm: Foreman,
  id: string,
  options: { lastEventId?: string; query?: string } = {},
): Promise<Watch> {
  const abort = new AbortController();
  const headers = fm.headers(
    options.lastEventId === undefined ? {} : { "last-event-id": options.lastEventId },
  );
  const res = await fetch(`${fm.url}/jobs/${id}/events${options.query ?? ""}`, {
    headers,
    signal: abort.signal,
  });
  const events: Sse[] = [];
  const ended = res.ok && res.body ? read(res.body, events) : res.text().then(() => "end" as const);
  return { status: res.status, headers: res.headers, events, ended, stop: () => abort.abort() };
}

async function read(body: ReadableStream<Uint8Array>, events: Sse[]): Promise<"end" | "error"> {
  let buffer = "";
  let current: Partial<Sse> & { data?: string } = {};
  try {
    for await (const text of body.pipeThrough(new TextDecoderStream())) {
      buffer += text;
      for (let nl = buffer.indexOf("\n"); nl !== -1; nl = buffer.indexOf("\n")) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line === "") {
          if (current.data !== undefined) {
            events.push({ id: current.id, event: current.event ?? "message", data: current.data });
          }
          current = {};
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const field = line.slice(0, colon);
          const value = line.slice(colon + 1).replace(/^ /, "");
          if (field === "data") current.data = value;
          else if (field === "id") current.id = value;
          else if (field === "event") current.event = value;
        }
      }
    }
    return "end";
  } catch {
    return "error";
  }
}

const durable = (events: Sse[]) => events.filter((e) => e.event !== "progress");

/** The job's events as foreman wrote them to the outbox, oldest first. */
function outbox(fm: Foreman, jobId: string): { id: string; state: string; body: string }[] {
  const db = new DatabaseSync(fm.dbPath, { readOnly: true });
  try {
    return db.prepare("SELECT id, job_state, body FROM outbox WHERE job_id = ? ORDER BY seq")
      .all(jobId).map((r) => ({
        id: String(r.id),
        state: String(r.job_state),
        body: String(r.body),
      }));
  } finally {
    db.close();
  }
}

async function submit(fm: Foreman, body: Record<string, unknown>): Promise<string> {
  const res = await fetch(`${fm.url}/jobs`, {
    method: "POST",
    headers: fm.headers(),
    body: JSON.stringify({ messages: [{ role: "user", content: "hi" }], ...body }),
  });
  assert.equal(res.status, 202, await res.clone().text());
  return (await res.json()).job_id;
}

async function state(fm: Foreman, id: string): Promise<string> {
  return (await (await fetch(`${fm.url}/jobs/${id}`, { headers: fm.headers() })).json()).state;
}

/** foreman's foreman_watchers gauge. */
async function watchers(fm: Foreman): Promise<number> {
  const text = await (await fetch(`${fm.url}/metrics`, { headers: fm.headers() })).text();
  return Number(/^foreman_watchers (\S+)$/m.exec(text)?.[1]);
}

/**
 * Occupies the worker: a job whose target request stalls before any byte, until it is cancelled.
 * Jobs submitted after it stay queued.
 */
async function blockWorker(fm: Foreman, sim: OllamaSim): Promise<string> {
  sim.stallNext(1);
  const id = await submit(fm, { model: "tiny-b" });
  // The stall may catch the model's load or the job's own request: either holds the worker.
  await waitFor(async () => ["loading", "working"].includes(await state(fm, id)), {
    what: "the blocking job",
  });
  return id;
}

async function cancel(fm: Foreman, id: string): Promise<void> {
  const res = await fetch(`${fm.url}/jobs/${id}`, { method: "DELETE", headers: fm.headers() });
  await res.body?.cancel();
}

/**
 * Opens a job's event stream on a raw socket and never reads it: what foreman sends waits in the
 * socket's buffers, then in foreman.
 */
async function silentWatcher(
  fm: Foreman,
  id: string,
  lastEventId?: string,
): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: fm.port });
  const resume = lastEventId === undefined ? "" : `Last-Event-ID: ${lastEventId}\r\n`;
  await conn.write(enc.encode(
    `GET /jobs/${id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
      `Authorization: Bearer ${fm.token}\r\n${resume}\r\n`,
  ));
  return conn;
}

/**
 * Reads from `reader` until `done` holds for what it has read, the stream ends or `ms` pass; returns the
 * text read. The reader is released (not cancelled), so the caller may go on reading.
 */
async function readUntil(
  reader: ReadableStreamDefaultReader<string>,
  done: (text: string) => boolean,
  ms: number,
): Promise<string> {
  let text = "";
  const deadline = Date.now() + ms;
  while (!done(text) && Date.now() < deadline) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((r) =>
      timer = setTimeout(() => r("late"), deadline - Date.now())
    );
    const next = await Promise.race([reader.read(), late]);
    clearTimeout(timer);
    if (next === "late" || next.done) break;
    text += next.value;
  }
  return text;
}

/**
 * foreman's daemon in this process, as `deno task start` builds it from `flags`, on a real port
 * and a real SQLite file in front of the simulator, with `tuning` (timings no setting reaches);
 * `logs` holds its log lines.
 */
async function withDaemon(
  tuning: Tuning,
  fn: (s: { sim: OllamaSim; fm: Foreman; logs: string[] }) => Promise<void>,
  flags: Record<string, string> = {},
): Promise<void> {
  const sim = await OllamaSim.start({ loadMs: 10, tokenMs: 2 });
  const dir = await Deno.makeTempDir({ prefix: "foreman-watch-" });
  const token = crypto.randomUUID();
  const logs: string[] = [];
  const daemon = await startDaemon(
    loadConfig({
      env: () => undefined,
      readFile: (path) => {
        throw new Deno.errors.NotFound(path);
      },
      flags: {
        addr: "127.0.0.1:0",
        db: `${dir}/data/foreman.db`,
        "ollama-url": sim.url,
        "poll-interval": "1s",
        token,
        ...flags,
      },
    }),
    createLogger({ write: (line) => logs.push(line) }),
    tuning,
  );
  const fm: Foreman = {
    url: daemon.url,
    port: daemon.addr.port,
    token,
    dbPath: `${dir}/data/foreman.db`,
    headers: (extra = {}) => ({ authorization: `Bearer ${token}`, ...extra }),
  };
  try {
    await fn({ sim, fm, logs });
  } finally {
    await daemon.stop();
    await daemon.finished;
    await sim.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function withStack(
  fn: (s: { sim: OllamaSim; fm: ForemanProcess }) => Promise<void>,
  options: { args?: string[]; loadMs?: number; tokenMs?: number } = {},
): Promise<void> {
  const sim = await OllamaSim.start({
    loadMs: options.loadMs ?? 10,
    tokenMs: options.tokenMs ?? 2,
  });
  const fm = await startForeman({
    ollamaUrl: sim.url,
    args: ["--poll-interval", "1s", ...(options.args ?? [])],
  });
  try {
    await fn({ sim, fm });
  } finally {
    await fm.stop();
    await sim.close();
  }
}

Deno.test("a job is watched from queued to done: the outbox's events in order, each linked to the one before", async () => {
  await withStack(async ({ sim, fm }) => {
    const blocker = await blockWorker(fm, sim);
    const id = await submit(fm, { model: "tiny-a", options: { num_predict: 4 } });
    const w = await watch(fm, id);
    assert.equal(w.status, 200);
    assert.match(w.headers.get("content-type")!, /^text\/event-stream/);
    await waitFor(() => w.events.length === 1, { what: "the queued event" });
    await cancel(fm, blocker);
    assert.equal(await w.ended, "end", "the stream ends after the terminal event");
    const seen = durable(w.events);
    assert.deepEqual(seen.map((e) => e.event), ["queued", "loading", "working", "done"]);
    const rows = outbox(fm, id);
    assert.deepEqual(
      seen.map((e) => [e.id, e.event, e.data]),
      rows.map((r) => [r.id, r.state, r.body]),
    );
    const bodies = seen.map((e) => JSON.parse(e.data));
    assert.deepEqual(bodies.map((b) => b.previous_state), [null, "queued", "loading", "working"]);
    assert.ok(bodies.every((b) => b.job_id === id && b.state === seen[bodies.indexOf(b)]!.event));
    assert.equal(bodies[3].result.done, true, "the done event carries the result, as a webhook's");
    await waitFor(async () => await watchers(fm) === 0, { what: "the watcher's place freed" });
  });
});

Deno.test("a finished job's stream sends its last event and ends; resuming after it is 204", async () => {
  await withStack(async ({ fm }) => {
    const id = await submit(fm, { model: "tiny-a", options: { num_predict: 2 } });
    const poll = await fetch(`${fm.url}/jobs/${id}?wait=30s`, { headers: fm.headers() });
    await poll.body?.cancel();
    await waitFor(async () => await state(fm, id) === "done", { what: "the job to finish" });
    const w = await watch(fm, id);
    assert.equal(await w.ended, "end");
    const rows = outbox(fm, id);
    assert.deepEqual(w.events.map((e) => e.id), [rows.at(-1)!.id]);
    const second = rows[1]!.id;
    const resumed = await watch(fm, id, { query: `?last_event_id=${second}` });
    assert.equal(await resumed.ended, "end");
    assert.deepEqual(resumed.events.map((e) => e.id), rows.slice(2).map((r) => r.id));
    const last = await watch(fm, id, { lastEventId: rows.at(-1)!.id });
    assert.equal(last.status, 204, "an EventSource told 204 stops reconnecting");
    const header = await watch(fm, id, { lastEventId: second, query: "?last_event_id=bogus" });
    await header.ended;
    assert.equal(header.events.length, rows.length - 2, "the header wins over the query");
  });
});

Deno.test("a watcher reconnecting with Last-Event-ID after foreman was killed misses and repeats nothing", async () => {
  await withStack(async ({ sim, fm }) => {
    const blocker = await blockWorker(fm, sim);
    const id = await submit(fm, { model: "tiny-a", options: { num_predict: 4 } });
    const first = await watch(fm, id);
    await waitFor(() => first.events.length === 1, { what: "the queued event" });
    await fm.kill();
    assert.equal(await first.ended, "error", "a killed foreman cuts the stream");
    await fm.restart();
    // The blocking job is requeued by the recovery and runs (its stall was used up), then this
    // one: its events are all written before the watcher comes back.
    await waitFor(async () => await state(fm, id) === "done", { what: "the job to finish" });
    const again = await watch(fm, id, { lastEventId: first.events.at(-1)!.id });
    assert.equal(await again.ended, "end");
    const ids = [...first.events, ...again.events].map((e) => e.id);
    assert.deepEqual(ids, outbox(fm, id).map((r) => r.id));
    assert.equal(new Set(ids).size, ids.length);
    void blocker;
  });
});

Deno.test("a long poll answers when the job changes and not before, or with the job as it is when the wait runs out", async () => {
  await withStack(async ({ sim, fm }) => {
    const blocker = await blockWorker(fm, sim);
    const id = await submit(fm, { model: "tiny-a", options: { num_predict: 2 } });

    const t0 = performance.now();
    const timedOut = await fetch(`${fm.url}/jobs/${id}?wait=300ms`, { headers: fm.headers() });
    assert.equal(timedOut.status, 200);
    assert.equal((await timedOut.json()).state, "queued");
    assert.ok(performance.now() - t0 >= 300, "it held for the whole wait");

    let settled = false;
    const changed = fetch(`${fm.url}/jobs/${id}?wait=30s`, { headers: fm.headers() })
      .finally(() => settled = true);
    await waitFor(async () => await watchers(fm) === 1, { what: "the long poll to wait" });
    assert.equal(settled, false, "nothing changed, so nothing was answered");
    await cancel(fm, id);
    const res = await changed;
    assert.equal(res.status, 200);
    assert.equal((await res.json()).state, "cancelled");
    assert.equal(await watchers(fm), 0);

    const finished = await fetch(`${fm.url}/jobs/${id}?wait=2m`, {
      headers: fm.headers(),
      signal: AbortSignal.timeout(10_000),
    });
    assert.equal((await finished.json()).state, "cancelled", "a finished job is answered at once");
    const preferred = await fetch(`${fm.url}/jobs/${blocker}`, {
      headers: fm.headers({ prefer: "wait=1" }),
    });
    assert.match((await preferred.json()).state, /^(loading|working)$/, "Prefer: wait=1 waits");

    for (const bad of ["abc", "-1s", "", "30"]) {
      const refused = await fetch(`${fm.url}/jobs/${id}?wait=${bad}`, { headers: fm.headers() });
      assert.equal(refused.status, 400, bad);
      assert.match((await refused.json()).error, /^invalid wait '/);
    }
  });
});

Deno.test("watchers past server.max_watchers get 503, and a place is freed when one leaves", async () => {
  await withStack(async ({ sim, fm }) => {
    await blockWorker(fm, sim);
    const id = await submit(fm, { model: "tiny-a" });
    const a = await watch(fm, id);
    const poll = fetch(`${fm.url}/jobs/${id}?wait=30s`, { headers: fm.headers() });
    await waitFor(async () => await watchers(fm) === 2, { what: "two watchers" });
    for (
      const refused of [
        await watch(fm, id),
        await fetch(`${fm.url}/jobs/${id}?wait=1s`, {
          headers: fm.headers(),
        }),
      ]
    ) {
      assert.equal(refused.status, 503);
      assert.equal(refused.headers.get("retry-after"), "5");
    }
    const shape = await fetch(`${fm.url}/jobs/${id}?wait=1s`, { headers: fm.headers() });
    assert.match((await shape.json()).error, /FOREMAN_MAX_WATCHERS/);
    a.stop();
    await a.ended;
    await waitFor(async () => await watchers(fm) === 1, { what: "the stream's place freed" });
    const b = await watch(fm, id);
    assert.equal(b.status, 200);
    await cancel(fm, id);
    assert.equal(await b.ended, "end");
    await (await poll).body?.cancel();
  }, { args: ["--max-watchers", "2"] });
});

Deno.test("a watcher that never reads is dropped without holding the worker or other watchers", async () => {
  const target = HostileTarget.start();
  const gate = Promise.withResolvers<void>();
  // An answer larger than the socket buffers between foreman and a client that reads nothing.
  const content = "x".repeat(8 * 1024 * 1024);
  target.on("/api/chat", async (req) => {
    const body = JSON.parse(req.body);
    if (body.messages?.[0]?.content === "big") await gate.promise;
    return new Response(
      JSON.stringify({
        model: "tiny",
        created_at: new Date().toISOString(),
        message: {
          role: "assistant",
          content: body.messages?.[0]?.content === "big" ? content : "ok",
        },
        done: true,
        done_reason: "stop",
      }),
      { headers: { "content-type": "application/json" } },
    );
  });
  const fm = await startForeman({
    ollamaUrl: target.url,
    args: ["--poll-interval", "1s", "--target-timeout", "5s", "--inline-limit", "32MiB"],
  });
  let conn: Deno.TcpConn | undefined;
  try {
    const id = await submit(fm, { model: "tiny", messages: [{ role: "user", content: "big" }] });
    await waitFor(async () => await state(fm, id) === "working", { what: "the job to work" });
    conn = await Deno.connect({ hostname: "127.0.0.1", port: fm.port });
    await conn.write(
      new TextEncoder().encode(
        `GET /jobs/${id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${fm.token}\r\n\r\n`,
      ),
    );
    const reader = await watch(fm, id);
    await waitFor(async () => await watchers(fm) === 2, { what: "both watchers" });
    gate.resolve();
    assert.equal(await reader.ended, "end", "the reading watcher gets everything");
    const done = durable(reader.events).at(-1)!;
    assert.equal(done.event, "done");
    assert.equal(JSON.parse(done.data).result.message.content.length, content.length);
    const next = await submit(fm, {
      model: "tiny",
      messages: [{ role: "user", content: "small" }],
    });
    const polled = await fetch(`${fm.url}/jobs/${next}?wait=30s`, { headers: fm.headers() });
    assert.equal((await polled.json()).state, "done", "the worker went on to the next job");
    await waitFor(async () => await watchers(fm) === 0, {
      what: "the stuck watcher to be dropped",
      timeout: 30_000,
    });
    assert.match(fm.output(), /event stream dropped: its reader stopped reading/);
  } finally {
    gate.resolve(); // a target still holding the answer would hold its own shutdown
    conn?.close();
    await fm.stop();
    await target.close();
  }
});

Deno.test("a sync caller's job is watched by a second client, with token counts while it works", async () => {
  const sim = await OllamaSim.start({ loadMs: 10, tokenMs: 15 });
  const fm = await startForeman({ ollamaUrl: sim.url, args: ["--poll-interval", "1s"] });
  try {
    const caller = await fetch(`${fm.url}/api/chat`, {
      method: "POST",
      headers: fm.headers(),
      body: JSON.stringify({
        model: "tiny-a",
        messages: [{ role: "user", content: "hi" }],
        options: { num_predict: 200 },
      }),
    });
    const id = caller.headers.get("x-foreman-job-id")!;
    const second = await watch(fm, id);
    const [, answer] = await Promise.all([second.ended, caller.text()]);
    assert.equal(answer.trim().split("\n").length, 201, "the caller's answer is untouched");
    assert.deepEqual(durable(second.events).map((e) => e.event), ["working", "done"]);
    const progress = second.events.filter((e) => e.event === "progress").map((e) =>
      JSON.parse(e.data)
    );
    assert.ok(progress.length >= 1, "a three-second job shows progress");
    for (const p of progress) {
      assert.deepEqual(Object.keys(p).sort(), [
        "elapsed_ms",
        "job_id",
        "state",
        "tokens",
        "tokens_per_second",
      ]);
      assert.equal(p.job_id, id);
      assert.equal(p.state, "working");
      assert.ok(p.tokens > 0 && p.tokens <= 201, JSON.stringify(p));
      assert.ok(p.tokens_per_second > 0);
      assert.equal(second.events.find((e) => e.event === "progress")!.id, undefined, "not durable");
    }
    assert.deepEqual(
      progress.map((p) => p.tokens),
      progress.map((p) => p.tokens).sort((a, b) => a - b),
    );
    assert.ok(outbox(fm, id).every((r) => r.state !== "progress"));

    const job = await submit(fm, { model: "tiny-a", options: { num_predict: 150 } });
    const async = await watch(fm, job);
    await async.ended;
    const asyncProgress = async.events.filter((e) => e.event === "progress").map((e) =>
      JSON.parse(e.data)
    );
    assert.ok(asyncProgress.length >= 1);
    for (const p of asyncProgress) {
      assert.equal(p.tokens, null, "an async job's answer does not stream: elapsed time only");
      assert.equal(p.tokens_per_second, null);
      assert.ok(p.elapsed_ms >= 0);
    }
  } finally {
    await fm.stop();
    await sim.close();
  }
});

Deno.test("watching needs the token, a known job and one of its own event ids", async () => {
  await withStack(async ({ fm }) => {
    const id = await submit(fm, { model: "tiny-a", options: { num_predict: 2 } });
    const other = await submit(fm, { model: "tiny-a", options: { num_predict: 2 } });
    for (const path of [`/jobs/${id}/events`, `/jobs/${id}?wait=1s`]) {
      const res = await fetch(fm.url + path);
      assert.equal(res.status, 401, path);
      assert.equal(res.headers.get("www-authenticate"), 'Bearer realm="foreman"');
      await res.body?.cancel();
    }
    const unknown = "01HF7YAT00QJ9A35Z6DQVV42M1";
    for (const path of [`/jobs/${unknown}/events`, `/jobs/${unknown}?wait=1s`]) {
      const res = await fetch(fm.url + path, { headers: fm.headers() });
      assert.equal(res.status, 404, path);
      assert.match((await res.json()).error, /not found/);
    }
    await waitFor(async () => await state(fm, other) === "done", { what: "the other job" });
    const foreign = outbox(fm, other)[0]!.id;
    const res = await fetch(`${fm.url}/jobs/${id}/events`, {
      headers: fm.headers({ "last-event-id": foreign }),
    });
    assert.equal(res.status, 400);
    assert.match((await res.json()).error, /^invalid Last-Event-ID '.*': not an event of job/);
    const head = await fetch(`${fm.url}/jobs/${id}/events`, {
      method: "HEAD",
      headers: fm.headers(),
    });
    assert.equal(head.status, 200);
    assert.match(head.headers.get("content-type")!, /^text\/event-stream/);
    assert.equal(await watchers(fm), 0, "HEAD takes no watcher's place");
  });
});

Deno.test("an idle event stream sends a comment every heartbeat, and nothing else until the job moves", async () => {
  await withDaemon({ watch: { heartbeat: 100 } }, async ({ sim, fm }) => {
    await blockWorker(fm, sim);
    const id = await submit(fm, { model: "tiny-a", options: { num_predict: 2 } });
    const res = await fetch(`${fm.url}/jobs/${id}/events`, { headers: fm.headers() });
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    const beats = (text: string) => text.split(": keep-alive\n\n").length - 1;
    const text = await readUntil(reader, (t) => beats(t) >= 3, 5_000);
    assert.ok(beats(text) >= 3, `three heartbeats within 5 s of 100 ms each: ${text}`);
    const frames = text.split("\n\n").filter((f) => f !== "");
    assert.match(frames[0]!, /^id: msg_\w+\nevent: queued\ndata: /, "the current state first");
    assert.ok(frames.slice(1).every((f) => f === ": keep-alive"), "then only comments");
    await cancel(fm, id);
    const rest = await readUntil(reader, (t) => t.includes("event: cancelled"), 5_000);
    assert.match(rest, /event: cancelled/);
    await reader.cancel();
  });
});

Deno.test("a stream whose reader takes nothing is dropped within the watchers' drain bound, whatever target.timeout", async () => {
  // target.timeout stays at its 10 minutes; the drain bound (MAX_DRAIN, 30 s) is shortened to 1 s.
  await withDaemon({ watch: { maxDrain: 1000 } }, async ({ fm, logs }) => {
    // Every event carries the job's metadata: the done event is 8 MiB, more than a socket holds.
    const id = await submit(fm, {
      model: "tiny-a",
      options: { num_predict: 2 },
      metadata: { note: "m".repeat(8 * 1024 * 1024) },
    });
    await waitFor(async () => await state(fm, id) === "done", { what: "the job to finish" });
    const t0 = performance.now();
    const conn = await silentWatcher(fm, id);
    try {
      await waitFor(async () => await watchers(fm) === 1, { what: "the stream to open" });
      await waitFor(async () => await watchers(fm) === 0, {
        what: "the silent stream to be dropped",
        timeout: 10_000,
      });
      const droppedAfter = Math.round(performance.now() - t0);
      await report("stream reader takes nothing", {
        drain_bound_ms: 1000,
        target_timeout: "10m",
        dropped_after_ms: droppedAfter,
      });
      const line = logs.find((l) => l.includes("event stream dropped"));
      assert.match(line ?? "", /read nothing for 1000 ms/);
      assert.ok(droppedAfter >= 1000, `dropped after ${droppedAfter} ms, before the bound`);
    } finally {
      conn.close();
    }
  }, { "max-metadata": "16MiB" });
});

Deno.test("a watcher too far behind is dropped when the next event comes, and the other watchers get every event", async () => {
  // Events of 2 MiB (the job's metadata rides in each) a few hundred ms apart (a model load, then
  // tokens): a reader keeps up; a socket that is never read holds about 4 MiB, so the silent
  // watcher is more than 256 KiB behind by the third.
  await withStack(async ({ sim, fm }) => {
    const blocker = await blockWorker(fm, sim);
    const id = await submit(fm, {
      model: "tiny-a",
      options: { num_predict: 10 },
      metadata: { note: "m".repeat(2 * 1024 * 1024) },
    });
    const silent = await silentWatcher(fm, id);
    try {
      const reader = await watch(fm, id);
      const poll = fetch(`${fm.url}/jobs/${id}?wait=60s`, { headers: fm.headers() });
      await waitFor(async () => await watchers(fm) === 3 && reader.events.length === 1, {
        what: "three watchers, the reader with the queued event",
      });
      await cancel(fm, blocker);
      // target.timeout is its default 10 minutes (drain bound 30 s): only the backlog drops it.
      await waitFor(() => /more than 262144 bytes of events unread/.test(fm.output()), {
        what: "the watcher behind to be dropped",
        timeout: 10_000,
      });
      assert.equal((await (await poll).json()).state, "loading", "the long poll answered");
      assert.equal(await reader.ended, "end", "the reader was not dropped");
      assert.deepEqual(durable(reader.events).map((e) => e.event), [
        "queued",
        "loading",
        "working",
        "done",
      ]);
      assert.deepEqual(durable(reader.events).map((e) => e.id), outbox(fm, id).map((r) => r.id));
      await waitFor(async () => await watchers(fm) === 0, { what: "every place freed" });
    } finally {
      silent.close();
    }
  }, { loadMs: 300, tokenMs: 20, args: ["--max-metadata", "4MiB"] });
});

Deno.test("a stream resuming behind 1 000 events gets them all in order, with those committed while it catches up", async () => {
  const dir = await Deno.makeTempDir({ prefix: "foreman-resume-" });
  await Deno.mkdir(`${dir}/data`);
  // Written before foreman starts: a queued job with 1 000 events of 16 KiB (its metadata rides
  // in each), not due for an hour, so only the cancel below moves it.
  const store = openStore(`${dir}/data/foreman.db`);
  const job = store.insertJob({
    kind: "async",
    endpoint: "chat",
    model: "tiny-a:latest",
    request: JSON.stringify({ model: "tiny-a:latest", messages: [] }),
    metadata: JSON.stringify({ note: "m".repeat(16 * 1024) }),
  });
  store.tx(() => {
    for (let i = 0; i < 333; i++) {
      store.transition("claim", job.id);
      store.transition("startWorking", job.id);
      store.transition("requeue", job.id, {
        error: "again",
        notBefore: Date.now() + 3_600_000,
        refund: true,
      });
    }
  });
  store.close();
  const sim = await OllamaSim.start({ loadMs: 10, tokenMs: 2 });
  const fm = await startForeman({ ollamaUrl: sim.url, dir, args: ["--poll-interval", "1s"] });
  try {
    const first = outbox(fm, job.id)[0]!.id;
    const res = await fetch(`${fm.url}/jobs/${job.id}/events`, {
      headers: fm.headers({ "last-event-id": first }),
      signal: AbortSignal.timeout(30_000),
    });
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    const ids = (text: string) => [...text.matchAll(/^id: (.+)$/gm)].map((m) => m[1]);
    const head = await readUntil(reader, (t) => ids(t).length >= 50, 10_000);
    await cancel(fm, job.id);
    let rest = "";
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += r.value;
    const rows = outbox(fm, job.id);
    assert.equal(rows.length, 1001);
    assert.equal(rows.at(-1)!.state, "cancelled");
    assert.deepEqual(ids(head + rest), rows.slice(1).map((r) => r.id), "each once, in order");
  } finally {
    await fm.stop();
    await sim.close();
    await Deno.remove(dir, { recursive: true });
  }
});
