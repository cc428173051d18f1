// Watching a job through a real foreman process (ADR-0017): the event stream of
// GET /jobs/{id}/events and the long poll of GET /jobs/{id}?wait=, in front of the simulator, read
// back against the outbox rows foreman wrote: order, resuming, progress, refusals. The watchers'
// limits (the cap, the drain bound, the heartbeat, a reader behind) are in watch_limits_test.ts.

import assert from "node:assert/strict";
import { waitFor } from "../harness/foreman.ts";
import { startStack } from "./support/stack.ts";
import {
  blockWorker,
  cancel,
  durable,
  outbox,
  state,
  submit,
  watch,
  watchers,
  withStack,
} from "./support/watch.ts";

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

Deno.test("a sync caller's job is watched by a second client, with token counts while it works", async () => {
  const { fm, close } = await startStack({ sim: { tokenMs: 15 } });
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
    await close();
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
