// Crash suite: foreman is killed with SIGKILL at seeded random moments while async jobs (with
// webhooks) and sync callers keep arriving over three models, and restarted each time. Afterwards
// no accepted job is lost, none is done twice, every final event reached the receiver and the
// database is intact.

import assert from "node:assert/strict";
import { type ForemanProcess, startForeman, waitFor } from "../../harness/foreman.ts";
import { OllamaSim } from "../../sim/mod.ts";
import { cleanup, Hook, openDb, report, Rng, scale, seedFor, stopWithin } from "./support.ts";

const SEED = seedFor(20_240_801);
const KILLS = scale(10, 30);
const MODELS = ["tiny-a", "tiny-b", "tiny-c"];

/** One submission as the client sees it: retried with its Idempotency-Key until it has an id. */
interface Submission {
  key: string;
  body: string;
  jobId?: string;
}

Deno.test(`SIGKILL at random moments loses no job, finishes none twice and delivers every final event (seed ${SEED}, ${KILLS} kills)`, async () => {
  const work = new Rng(SEED);
  const kills = new Rng(SEED ^ 0x5eed);
  const flaky = new Rng(SEED ^ 0xbad);
  const sim = await OllamaSim.start({ loadMs: 10, tokenMs: 2 });
  // A receiver that answers 500 to one delivery in ten, so retries cross the crashes too.
  const hook = await Hook.start(() => ({ status: flaky.chance(0.1) ? 500 : 200 }));
  const fm = await startForeman({
    ollamaUrl: sim.url,
    args: [
      "--poll-interval",
      "1s",
      "--retry-base",
      "50ms",
      "--max-attempts",
      "6",
      "--webhook-hosts",
      hook.host,
      "--webhook-retry-base",
      "50ms",
      "--webhook-max-attempts",
      "50",
    ],
  });
  const submissions: Submission[] = [];
  const sync = { answered: 0, cut: 0, other: [] as string[] };
  const pending: Promise<unknown>[] = [];
  let stopped = false;
  try {
    const submit = async (s: Submission) => {
      try {
        const res = await fetch(fm.url + "/jobs", {
          method: "POST",
          headers: fm.headers({ "idempotency-key": s.key }),
          body: s.body,
        });
        const json = await res.json();
        if (res.status === 202) s.jobId = json.job_id;
        else sync.other.push(`POST /jobs ${res.status} ${JSON.stringify(json)}`);
      } catch {
        // foreman died before answering: the job may or may not exist; the key settles it later.
      }
    };
    const chat = async (model: string, stream: boolean) => {
      try {
        const res = await fetch(fm.url + "/api/chat", {
          method: "POST",
          headers: fm.headers(),
          body: JSON.stringify({
            model,
            stream,
            messages: [{ role: "user", content: "sync" }],
            options: { num_predict: 6 },
          }),
        });
        const text = await res.text();
        if (res.status === 200 && text.includes('"done":true')) sync.answered++;
        else if (res.status === 200 || res.status === 503) sync.cut++;
        else sync.other.push(`POST /api/chat ${res.status} ${text.slice(0, 200)}`);
      } catch {
        sync.cut++;
      }
    };
    const cancel = async (id: string) => {
      try {
        const res = await fetch(`${fm.url}/jobs/${id}`, {
          method: "DELETE",
          headers: fm.headers(),
        });
        await res.body?.cancel();
        if (![200, 409].includes(res.status)) sync.other.push(`DELETE ${res.status}`);
      } catch { /* killed meanwhile */ }
    };

    // The workload runs on its own while the main loop kills and restarts foreman.
    const workload = (async () => {
      let n = 0;
      while (!stopped) {
        const roll = work.next();
        if (roll < 0.6) {
          const s: Submission = {
            key: `crash-${SEED}-${n}`,
            body: JSON.stringify({
              model: work.pick(MODELS),
              messages: [{ role: "user", content: `job ${n}` }],
              options: { num_predict: work.int(2, 24) },
              metadata: { n },
              state_webhook_url: `${hook.url}/events`,
              ...(work.chance(0.3) ? { endpoint: "generate", prompt: `job ${n}` } : {}),
            }),
          };
          n++;
          submissions.push(s);
          pending.push(submit(s));
        } else if (roll < 0.85) {
          pending.push(chat(work.pick(MODELS), work.chance(0.5)));
        } else if (roll < 0.9) {
          const known = submissions.filter((s) => s.jobId);
          if (known.length) pending.push(cancel(work.pick(known).jobId!));
        }
        await new Promise((r) => setTimeout(r, work.int(8, 80)));
      }
    })();

    const started = performance.now();
    for (let k = 0; k < KILLS; k++) {
      await new Promise((r) => setTimeout(r, kills.int(50, 1200)));
      await fm.kill();
      await fm.restart();
    }
    stopped = true;
    await workload;
    await Promise.all(pending);

    // The client's side of at-least-once submission: resend every unanswered one with its key.
    for (const s of submissions.filter((s) => !s.jobId)) {
      await waitFor(async () => {
        await submit(s);
        return s.jobId;
      }, { what: `submission ${s.key} to be answered` });
    }
    const ids = submissions.map((s) => s.jobId!);
    await settle(fm, ids);
    const elapsed = (performance.now() - started) / 1000;
    await stopWithin(fm);

    const db = openDb(fm.dbPath);
    try {
      assert.equal(db.prepare("PRAGMA integrity_check").get()!.integrity_check, "ok");
      const left = db.prepare(
        "SELECT id, kind, state FROM jobs WHERE state IN ('queued', 'loading', 'working')",
      ).all();
      assert.deepEqual(left, [], "no job is left queued, loading or working");

      const asyncJobs = new Map(
        db.prepare("SELECT id, state, attempt, idempotency_key FROM jobs WHERE kind = 'async'")
          .all().map((r) => [String(r.id), r]),
      );
      assert.equal(new Set(ids).size, submissions.length, "one job per submission");
      assert.equal(asyncJobs.size, submissions.length, "no job without a submission");
      for (const s of submissions) {
        assert.equal(asyncJobs.get(s.jobId!)?.idempotency_key, s.key);
      }

      // Events as the outbox holds them: a chain of transitions ending in one terminal event.
      const events = new Map<string, { id: string; state: string; previous: string | null }[]>();
      for (const r of db.prepare("SELECT id, job_id, body FROM outbox ORDER BY seq").all()) {
        const body = JSON.parse(String(r.body));
        const list = events.get(String(r.job_id)) ?? [];
        list.push({ id: String(r.id), state: body.state, previous: body.previous_state });
        events.set(String(r.job_id), list);
      }
      const terminal = ["done", "failed", "cancelled"];
      const counts = { done: 0, failed: 0, cancelled: 0 };
      for (const [id, job] of asyncJobs) {
        const state = String(job.state) as keyof typeof counts;
        counts[state]++;
        const chain = events.get(id) ?? [];
        assert.equal(chain[0]?.state, "queued", `job ${id} starts with its queued event`);
        for (let i = 1; i < chain.length; i++) {
          assert.equal(chain[i]!.previous, chain[i - 1]!.state, `job ${id}'s events chain up`);
        }
        assert.equal(
          chain.filter((e) => terminal.includes(e.state)).length,
          1,
          `job ${id} reached a terminal state exactly once`,
        );
        assert.equal(chain.at(-1)!.state, state, `job ${id}'s last event is its state`);
        // The receiver saw the final event (maybe more than once: at-least-once).
        const final = chain.at(-1)!.id;
        assert.ok(
          hook.ok().some((d) => d.id === final && d.event.state === state),
          `the ${state} event of job ${id} reached the receiver`,
        );
        // First arrivals follow the job's order.
        const arrived = [
          ...new Set(hook.ok().filter((d) => d.event.job_id === id).map((d) => d.id)),
        ];
        assert.deepEqual(arrived, chain.map((e) => e.id), `job ${id}'s events arrived in order`);
      }
      assert.deepEqual(sync.other, [], "no caller got an unexpected answer");
      const ok = hook.ok();
      await report("crash", {
        seed: SEED,
        kills: KILLS,
        seconds: Math.round(elapsed),
        async_jobs: asyncJobs.size,
        ...counts,
        rerun_after_crash: [...asyncJobs.values()].filter((j) => Number(j.attempt) > 1).length,
        sync_answered: sync.answered,
        sync_cut_by_kill: sync.cut,
        events: ok.length,
        redelivered: ok.length - new Set(ok.map((d) => d.id)).size,
      });
      assert.ok(counts.done > 0, "the workload finished jobs");
    } finally {
      db.close();
    }
  } finally {
    stopped = true;
    await cleanup(() => fm.kill(), () => hook.close(), () => sim.close());
  }
});

/** Waits until every job is terminal and no webhook event is pending. */
async function settle(fm: ForemanProcess, ids: string[]): Promise<void> {
  await waitFor(() => {
    const db = openDb(fm.dbPath);
    try {
      const open = db.prepare(
        "SELECT count(*) AS n FROM jobs WHERE state IN ('queued', 'loading', 'working')",
      ).get()!.n;
      const pendingEvents = db.prepare(
        "SELECT count(*) AS n FROM outbox WHERE state = 'pending'",
      ).get()!.n;
      return Number(open) === 0 && Number(pendingEvents) === 0;
    } finally {
      db.close();
    }
  }, { timeout: 60_000, interval: 100, what: `${ids.length} jobs and their events to settle` });
}
