// Watching a job costs memory per watcher, never per byte the job holds, checked against the peak
// RSS of a real foreman process: 200 long polls of a job with a 4 MiB prompt and a 4 MiB answer
// (its result and its `completion` artifact), waiting on it, woken together by its `done` and then
// asked again at once; streams that resume from the first of a job's 2 000 events and read nothing.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { type ForemanProcess, startForeman, waitFor } from "../../harness/foreman.ts";
import { OllamaSim } from "../../sim/mod.ts";
import { HostileTarget } from "../support/hostile_target.ts";
import { call, cleanup, report, rssMiB } from "./support.ts";
import { seedBacklog, silentWatcher, watchers } from "../support/watch.ts";

/** Peak resident memory of a process so far, in MiB (VmHWM). */
function peakMiB(pid: number): number {
  const kb = /^VmHWM:\s+(\d+) kB$/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  if (!kb) throw new Error(`Cannot read VmHWM of process ${pid}`);
  return Number(kb[1]) / 1024;
}

const POLLS = 200;
const STREAMS = 10;
const JOINERS = 50;
const MIB = 1024 * 1024;
const SIZE = 4 * MIB;

Deno.test(`${POLLS} long polls of a job with a 4 MiB prompt and answer hold no copy of either`, async () => {
  const target = HostileTarget.start();
  const gate = Promise.withResolvers<void>();
  const content = "x".repeat(SIZE);
  target.on("/api/chat", async (req) => {
    const body = JSON.parse(req.body);
    const big = body.messages?.[0]?.content?.length === SIZE;
    if (big) await gate.promise;
    return new Response(
      JSON.stringify({
        model: "tiny",
        created_at: new Date().toISOString(),
        message: { role: "assistant", content: big ? content : "ok" },
        done: true,
        done_reason: "stop",
      }),
      { headers: { "content-type": "application/json" } },
    );
  });
  const fm = await startForeman({ ollamaUrl: target.url, args: ["--poll-interval", "1s"] });
  try {
    // One small job first, so the first big answer's run pays no one-off cost inside the figure.
    const warm = await call(fm, "POST", "/jobs", {
      model: "tiny",
      messages: [{ role: "user", content: "small" }],
    });
    await call(fm, "GET", `/jobs/${warm.json.job_id}?wait=5s`);
    const submitted = await call(fm, "POST", "/jobs", {
      model: "tiny",
      messages: [{ role: "user", content: "y".repeat(SIZE) }],
    });
    const id = submitted.json.job_id as string;
    const before = rssMiB(fm.pid);
    await waitFor(async () => (await call(fm, "GET", `/jobs/${id}`)).json.state === "working", {
      what: "the job to work",
    });
    const poll = async () => {
      const res = await fetch(`${fm.url}/jobs/${id}?wait=60s`, {
        headers: fm.headers(),
        signal: AbortSignal.timeout(60_000),
      });
      return { status: res.status, job: await res.json() };
    };
    const woken = Array.from({ length: POLLS }, poll);
    await waitFor(async () => await watchers(fm) === POLLS, {
      what: `${POLLS} long polls to wait`,
    });
    const waiting = peakMiB(fm.pid);
    gate.resolve();
    const first = await Promise.all(woken);
    const afterWake = peakMiB(fm.pid);
    const again = await Promise.all(Array.from({ length: POLLS }, poll));
    const afterAgain = peakMiB(fm.pid);

    for (const { status, job } of [...first, ...again]) {
      assert.equal(status, 200);
      assert.equal(job.state, "done");
      assert.equal(job.result, null, "over the inline limit: the artifact's URL has it");
      assert.deepEqual(job.artifacts.map((a: { name: string }) => a.name), ["completion"]);
      assert.equal(job.artifacts[0].inline, null);
      assert.ok(job.artifacts[0].size > SIZE);
    }
    await report("long polls of a large job", {
      polls: POLLS,
      prompt_mib: SIZE / MIB,
      answer_mib: SIZE / MIB,
      rss_before_mib: Math.round(before),
      peak_waiting_mib: Math.round(waiting),
      peak_after_wake_mib: Math.round(afterWake),
      peak_after_again_mib: Math.round(afterAgain),
    });
    // The worker's own handling of the job (the prompt sent, the answer read, parsed, stored and
    // its event rendered) is a few copies of each; a poll that held the prompt while it waited, or
    // loaded the result and the artifact to answer, would be 200 of them.
    assert.ok(
      afterAgain - before < 100,
      `${POLLS} long polls raised foreman's peak RSS from ${before.toFixed(0)} to ` +
        `${afterAgain.toFixed(0)} MiB`,
    );
  } finally {
    gate.resolve();
    await cleanup(() => fm.stop(), () => target.close());
  }
});

Deno.test("streams resuming from the first of 2 000 events hold a page each, not the backlog", async () => {
  const sim = await OllamaSim.start({ loadMs: 5, tokenMs: 1 });
  const dir = await Deno.makeTempDir({ prefix: "foreman-backlog-" });
  await Deno.mkdir(`${dir}/data`);
  // Written before foreman starts: a job retried until it has 2 000 events, each carrying its
  // 16 KiB of metadata, as a webhook event does.
  const jobId = seedBacklog(`${dir}/data/foreman.db`, { rounds: 666, notBefore: 0, cancel: true });
  const db = new DatabaseSync(`${dir}/data/foreman.db`);
  const rows = db.prepare("SELECT id FROM outbox WHERE job_id = ? ORDER BY seq")
    .all(jobId).map((r) => String(r.id));
  const backlogMiB = Number(
    db.prepare("SELECT sum(length(body)) AS n FROM outbox WHERE job_id = ?").get(jobId)!.n,
  ) / MIB;
  db.close();
  assert.equal(rows.length, 2000);
  const fm = await startForeman({ ollamaUrl: sim.url, dir });
  const conns: Deno.TcpConn[] = [];
  try {
    const before = rssMiB(fm.pid);
    // Streams whose readers take nothing: whatever foreman reads for them waits in foreman.
    for (let i = 0; i < STREAMS; i++) {
      conns.push(await silentWatcher(fm, jobId, rows[0]));
    }
    await waitFor(async () => await watchers(fm) === STREAMS, { what: `${STREAMS} streams` });
    const held = peakMiB(fm.pid);

    // A reader that reads gets the whole backlog, in order, a page at a time.
    const res = await fetch(`${fm.url}/jobs/${jobId}/events`, {
      headers: fm.headers({ "last-event-id": rows[0]! }),
      signal: AbortSignal.timeout(30_000),
    });
    const ids = [...(await res.text()).matchAll(/^id: (.+)$/gm)].map((m) => m[1]);
    assert.deepEqual(ids, rows.slice(1));
    const after = peakMiB(fm.pid);
    await report("streams resuming behind a long backlog", {
      streams: STREAMS,
      events: rows.length,
      backlog_mib: Math.round(backlogMiB),
      rss_before_mib: Math.round(before),
      peak_with_streams_mib: Math.round(held),
      peak_after_reader_mib: Math.round(after),
    });
    assert.ok(
      held - before < 64,
      `${STREAMS} streams behind ${backlogMiB.toFixed(0)} MiB of events raised foreman's peak ` +
        `RSS from ${before.toFixed(0)} to ${held.toFixed(0)} MiB`,
    );
  } finally {
    for (const conn of conns) conn.close();
    await cleanup(() => fm.stop(), () => sim.close());
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("streams joining a job share the bytes of its latest event", async () => {
  const sim = await OllamaSim.start({ loadMs: 5, tokenMs: 1 });
  const fm = await startForeman({
    ollamaUrl: sim.url,
    args: ["--poll-interval", "1s", "--max-metadata", "8MiB"],
  });
  const conns: Deno.TcpConn[] = [];
  try {
    // Its metadata rides in every event: the done event is 4 MiB.
    const submitted = await call(fm, "POST", "/jobs", {
      model: "tiny-a",
      messages: [{ role: "user", content: "hi" }],
      metadata: { note: "m".repeat(SIZE) },
    });
    const id = submitted.json.job_id as string;
    await waitFor(async () => (await call(fm, "GET", `/jobs/${id}`)).json.state === "done", {
      what: "the job to finish",
    });
    const before = rssMiB(fm.pid);
    // Readers that take nothing: past the first few MiB their socket holds, the event waits in
    // foreman, once for all of them.
    for (let i = 0; i < JOINERS; i++) {
      conns.push(await silentWatcher(fm, id));
      await waitFor(async () => await watchers(fm) === i + 1, { what: `stream ${i + 1}` });
    }
    const held = peakMiB(fm.pid);
    await report("streams joining a large job", {
      streams: JOINERS,
      event_mib: SIZE / MIB,
      rss_before_mib: Math.round(before),
      peak_with_streams_mib: Math.round(held),
    });
    assert.ok(
      held - before < 100,
      `${JOINERS} streams of a 4 MiB event raised foreman's peak RSS from ${before.toFixed(0)} ` +
        `to ${held.toFixed(0)} MiB`,
    );
  } finally {
    for (const conn of conns) conn.close();
    await cleanup(() => fm.stop(), () => sim.close());
  }
});
