// Target-fault suite: the simulated Ollama goes away and comes back, answers 5xx and 4xx, stalls
// and cuts streams, and forgets what it had loaded. Jobs are retried or failed exactly as the
// rules say, sync callers always get Ollama-shaped answers, and the worker keeps going.

import assert from "node:assert/strict";
import { type ForemanProcess, waitFor } from "../../harness/foreman.ts";
import { type Stack, startStack } from "../support/stack.ts";
import { call, report, Rng, scale, seedFor } from "./support.ts";

const SEED = seedFor(8_080);
const FLAPS = scale(6, 40);
const TARGET_TIMEOUT_MS = 500;

function stack(args: string[] = []): Promise<Stack> {
  return startStack({
    sim: { tokenMs: 5 },
    args: [
      "--poll-interval",
      "500ms",
      "--retry-base",
      "20ms",
      "--max-attempts",
      "3",
      "--target-timeout",
      `${TARGET_TIMEOUT_MS}ms`,
      ...args,
    ],
  });
}

function chatBody(model: string, stream: boolean, tokens = 6, content = "x") {
  return { model, stream, messages: [{ role: "user", content }], options: { num_predict: tokens } };
}

/** A sync chat; returns status, the NDJSON lines (or the one object) and the job id. */
async function syncChat(fm: ForemanProcess, body: Record<string, unknown>) {
  const res = await fetch(fm.url + "/api/chat", {
    method: "POST",
    headers: fm.headers(),
    body: JSON.stringify(body),
  });
  const text = await res.text();
  const lines = text.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
  return { status: res.status, lines, id: res.headers.get("x-foreman-job-id") };
}

async function job(fm: ForemanProcess, id: string) {
  return (await call(fm, "GET", `/jobs/${id}`)).json;
}

async function submit(fm: ForemanProcess, body: Record<string, unknown>): Promise<string> {
  const r = await call(fm, "POST", "/jobs", body);
  assert.equal(r.status, 202, JSON.stringify(r.json));
  return String(r.json.job_id);
}

async function terminal(fm: ForemanProcess, id: string, timeout = 20_000) {
  return await waitFor(async () => {
    const j = await job(fm, id);
    return ["done", "failed", "cancelled"].includes(String(j.state)) && j;
  }, { timeout, what: `job ${id} to end` });
}

Deno.test(`a target that goes away and comes back ${FLAPS} times fails no job and burns no attempt (seed ${SEED})`, async () => {
  const rng = new Rng(SEED);
  const { sim, fm, close } = await stack();
  try {
    const models = ["tiny-a", "tiny-b"];
    const asyncIds: string[] = [];
    for (let i = 0; i < scale(12, 80); i++) {
      asyncIds.push(await submit(fm, chatBody(rng.pick(models), false, rng.int(4, 30))));
    }
    const callers = Array.from(
      { length: scale(8, 40) },
      () => syncChat(fm, chatBody(rng.pick(models), rng.chance(0.5), rng.int(4, 30))),
    );
    const started = performance.now();
    for (let i = 0; i < FLAPS; i++) {
      await new Promise((r) => setTimeout(r, rng.int(50, 400)));
      await sim.stop();
      await new Promise((r) => setTimeout(r, rng.int(50, 500)));
      await sim.restart({ keepResidency: rng.chance(0.5) });
    }
    const answers = await Promise.all(callers);
    const jobs = await Promise.all(asyncIds.map((id) => terminal(fm, id, 60_000)));
    const seconds = (performance.now() - started) / 1000;

    for (const j of jobs) {
      assert.equal(j.state, "done", `async job ${j.job_id} survived every outage`);
      assert.equal(j.attempt, 1, "connection failures give the attempt back");
    }
    let cutMidStream = 0;
    for (const a of answers) {
      assert.equal(a.status, 200);
      const last = a.lines.at(-1)!;
      const sj = await job(fm, a.id!);
      if (last.done === true) {
        assert.equal(sj.state, "done");
      } else {
        // Bytes had reached the caller: Ollama's convention is one last {"error"} line.
        assert.equal(typeof last.error, "string", JSON.stringify(last));
        assert.equal(sj.state, "failed");
        cutMidStream++;
      }
    }
    // The worker is not wedged: a fresh request is served at once.
    const fresh = await syncChat(fm, chatBody("tiny-a", false, 2));
    assert.equal(fresh.lines[0].done, true);
    await report("target-flaps", {
      seed: SEED,
      flaps: FLAPS,
      seconds: Math.round(seconds),
      async_done: jobs.length,
      sync_done: answers.length - cutMidStream,
      sync_cut_mid_stream: cutMidStream,
    });
  } finally {
    await close();
  }
});

Deno.test("after an outage with a deep queue the worker resumes within one backoff step and tried the target once per step", async () => {
  const { sim, fm, close } = await stack();
  try {
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push(await submit(fm, chatBody("tiny-a", false, 20)));
    await sim.stop();
    const from = fm.output().length;
    const outageMs = 1500;
    await new Promise((r) => setTimeout(r, outageMs));
    await sim.restart();
    const back = performance.now();
    await Promise.all(ids.map((id) => terminal(fm, id)));
    const resumeSeconds = (performance.now() - back) / 1000;
    const tries = fm.output().slice(from).split("\n")
      .filter((l) => l.includes("target unreachable, job requeued")).length;
    // retry_base 20ms doubling: about log2(1500 / 20) + 1 tries, whatever the queue's depth.
    assert.ok(tries <= 9, `${tries} tries against the down target for a queue of 20`);
    // The last backoff step is below 2 × the outage; 20 jobs then take about 2 s.
    assert.ok(resumeSeconds < 2 * outageMs / 1000 + 4, `done ${resumeSeconds} s after the target`);
    await report("target-outage-deep-queue", {
      outage_ms: outageMs,
      queued: ids.length,
      tries_while_down: tries,
      all_done_after_return_s: Number(resumeSeconds.toFixed(1)),
    });
  } finally {
    await close();
  }
});

Deno.test("5xx, 408 and 429 use attempts, other 4xx fail at once, and callers get the target's error", async () => {
  const { sim, fm, close } = await stack();
  try {
    // Warm tiny-a so each fault hits the inference request itself.
    assert.equal((await syncChat(fm, chatBody("tiny-a", false))).status, 200);

    sim.failNext(2, 500, "llama runner process has terminated");
    const recovered = await terminal(fm, await submit(fm, chatBody("tiny-a", false)));
    assert.equal(recovered.state, "done");
    assert.equal(recovered.attempt, 3, "two 500s then success on the last attempt");

    for (const status of [500, 503, 408, 429]) {
      sim.failNext(3, status, `target said ${status}`);
      const failed = await terminal(fm, await submit(fm, chatBody("tiny-a", false)));
      assert.equal(failed.state, "failed", `three ${status}s exhaust the attempts`);
      assert.equal(failed.attempt, 3);
      assert.equal(failed.error, `target said ${status}`);
    }
    for (const status of [400, 404, 422]) {
      sim.failNext(1, status, `bad request ${status}`);
      const failed = await terminal(fm, await submit(fm, chatBody("tiny-a", false)));
      assert.equal(failed.state, "failed", `a ${status} fails at once`);
      assert.equal(failed.attempt, 1);
      assert.equal(failed.error, `bad request ${status}`);
    }

    // Sync callers: the target's status and its {"error"}, streamed or not.
    for (const stream of [false, true]) {
      sim.failNext(3, 500, "out of memory");
      const five = await syncChat(fm, chatBody("tiny-a", stream));
      assert.equal(five.status, 500);
      assert.deepEqual(five.lines, [{ error: "out of memory" }]);
      sim.failNext(1, 400, "invalid options");
      const four = await syncChat(fm, chatBody("tiny-a", stream));
      assert.equal(four.status, 400);
      assert.deepEqual(four.lines, [{ error: "invalid options" }]);
    }
    assert.equal((await syncChat(fm, chatBody("tiny-a", false))).lines[0].done, true);
  } finally {
    await close();
  }
});

Deno.test("stalls and cut connections are caught within the target timeout and retried or ended by the rules", async () => {
  const { sim, fm, close } = await stack();
  try {
    assert.equal((await syncChat(fm, chatBody("tiny-a", false))).status, 200);

    // Async jobs: a stall before any byte and a cut connection are retried without an attempt.
    sim.stallNext(1);
    const stalled = await terminal(fm, await submit(fm, chatBody("tiny-a", false)));
    assert.equal(stalled.state, "done");
    assert.equal(stalled.attempt, 1);
    sim.dropNext(1);
    const dropped = await terminal(fm, await submit(fm, chatBody("tiny-a", false)));
    assert.equal(dropped.state, "done");
    assert.equal(dropped.attempt, 1);

    // A sync stream that stalls after bytes reached the caller: detected, final {"error"} line.
    sim.stallNext(1, { afterChunks: 3 });
    const t0 = performance.now();
    const stall = await syncChat(fm, chatBody("tiny-a", true, 20));
    const detectMs = performance.now() - t0;
    assert.equal(stall.status, 200);
    assert.equal(stall.lines.length, 4);
    assert.match(stall.lines[3].error, /sent nothing for 500 ms/);
    assert.equal((await job(fm, stall.id!)).state, "failed");
    // The silence is the one timeout long (the error line names it); the upper bound, a few
    // seconds, only says the stall was caught at all.
    assert.ok(detectMs >= TARGET_TIMEOUT_MS, `stall detected after ${detectMs} ms`);
    assert.ok(detectMs < TARGET_TIMEOUT_MS + 4_500, `stall detected after ${detectMs} ms`);

    sim.dropNext(1, { afterChunks: 2 });
    const cut = await syncChat(fm, chatBody("tiny-a", true, 20));
    assert.equal(cut.lines.length, 3);
    assert.equal(typeof cut.lines[2].error, "string");
    assert.equal((await job(fm, cut.id!)).state, "failed");

    // stream:false never shows partial bytes, so its stall is retried like an async job's.
    sim.stallNext(1);
    const quiet = await syncChat(fm, chatBody("tiny-a", false));
    assert.equal(quiet.status, 200);
    assert.equal(quiet.lines[0].done, true);
    assert.equal((await job(fm, quiet.id!)).attempt, 1);

    // Many faults in a row, then the worker still serves promptly.
    sim.stallNext(2);
    sim.dropNext(2);
    const after = await terminal(fm, await submit(fm, chatBody("tiny-b", false)));
    assert.equal(after.state, "done");
    const fresh = await syncChat(fm, chatBody("tiny-a", false, 2));
    assert.equal(fresh.lines[0].done, true);
    await report("target-stalls", { stall_detect_ms: Math.round(detectMs) });
  } finally {
    await close();
  }
});

Deno.test("a target restart that loses residency is loaded again and the job succeeds", async () => {
  const { sim, fm, close } = await stack();
  try {
    assert.equal((await syncChat(fm, chatBody("tiny-a", false))).lines[0].done, true);
    const loadsBefore = sim.loads().length;
    await sim.restart();
    const async = await terminal(fm, await submit(fm, chatBody("tiny-a", false)));
    assert.equal(async.state, "done");
    assert.equal(async.attempt, 1);
    const sync = await syncChat(fm, chatBody("tiny-a", true));
    assert.equal(sync.lines.at(-1).done, true);
    assert.ok(sim.loads().length > loadsBefore, "the model was loaded again");
    assert.ok(sim.resident().includes("tiny-a:latest"));

    // Direct routes answer 503 in Ollama's shape while the target is away.
    await sim.stop();
    for (
      const [path, body] of [["/api/embed", { model: "embed-e", input: "x" }], ["/api/show", {
        model: "tiny-a",
      }]] as const
    ) {
      const r = await call(fm, "POST", path, body);
      assert.equal(r.status, 503, path);
      assert.equal(typeof r.json.error, "string");
    }
    await sim.restart();
  } finally {
    await close();
  }
});
