// The limits on watching a job (ADR-0017): server.max_watchers, a watcher that never reads, the
// heartbeat, the drain bound, a watcher too far behind, a resume behind a long backlog. What only
// an internal timing reaches (the heartbeat, the drain bound) runs against foreman's daemon started
// in this process, on a real port and a real SQLite file, with those timings shortened.

import assert from "node:assert/strict";
import { startForeman, waitFor } from "../harness/foreman.ts";
import { OllamaSim } from "../sim/mod.ts";
import { report } from "./reliability/support.ts";
import { HostileTarget } from "./support/hostile_target.ts";
import {
  blockWorker,
  cancel,
  durable,
  outbox,
  readUntil,
  seedBacklog,
  silentWatcher,
  state,
  submit,
  watch,
  watchers,
  withDaemon,
  withStack,
} from "./support/watch.ts";

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
    conn = await silentWatcher(fm, id);
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
  const jobId = seedBacklog(`${dir}/data/foreman.db`, {
    rounds: 333,
    notBefore: Date.now() + 3_600_000,
    cancel: false,
  });
  const sim = await OllamaSim.start({ loadMs: 10, tokenMs: 2 });
  const fm = await startForeman({ ollamaUrl: sim.url, dir, args: ["--poll-interval", "1s"] });
  try {
    const first = outbox(fm, jobId)[0]!.id;
    const res = await fetch(`${fm.url}/jobs/${jobId}/events`, {
      headers: fm.headers({ "last-event-id": first }),
      signal: AbortSignal.timeout(30_000),
    });
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    const ids = (text: string) => [...text.matchAll(/^id: (.+)$/gm)].map((m) => m[1]);
    const head = await readUntil(reader, (t) => ids(t).length >= 50, 10_000);
    await cancel(fm, jobId);
    let rest = "";
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += r.value;
    const rows = outbox(fm, jobId);
    assert.equal(rows.length, 1001);
    assert.equal(rows.at(-1)!.state, "cancelled");
    assert.deepEqual(ids(head + rest), rows.slice(1).map((r) => r.id), "each once, in order");
  } finally {
    await fm.stop();
    await sim.close();
    await Deno.remove(dir, { recursive: true });
  }
});
