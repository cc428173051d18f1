// Watching a job costs memory per watcher, never per byte the job holds: 200 long polls of a job
// with a 4 MiB prompt and a 4 MiB answer (its result and its `completion` artifact), waiting on it,
// woken together by its `done` and then asked again at once, checked against the peak RSS of a real
// foreman process.

import assert from "node:assert/strict";
import { startForeman, waitFor } from "../../harness/foreman.ts";
import { HostileTarget } from "../support/hostile_target.ts";
import { call, cleanup, report, rssMiB } from "./support.ts";

/** Peak resident memory of a process so far, in MiB (VmHWM). */
function peakMiB(pid: number): number {
  const kb = /^VmHWM:\s+(\d+) kB$/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  if (!kb) throw new Error(`Cannot read VmHWM of process ${pid}`);
  return Number(kb[1]) / 1024;
}

const POLLS = 200;
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
    await waitFor(async () => {
      const text = await (await fetch(`${fm.url}/metrics`, { headers: fm.headers() })).text();
      return Number(/^foreman_watchers (\S+)$/m.exec(text)?.[1]) === POLLS;
    }, { what: `${POLLS} long polls to wait` });
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
