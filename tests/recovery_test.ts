// Crashes: foreman killed with SIGKILL while jobs are queued and running, then restarted.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { waitFor } from "../harness/foreman.ts";
import { startStack } from "./support/stack.ts";

Deno.test("kill -9 with jobs queued and running loses nothing and serves new requests after restart", async () => {
  const { fm, close } = await startStack({ sim: { tokenMs: 20 } });
  try {
    const submit = async (model: string, tokens: number) => {
      const res = await fetch(fm.url + "/jobs", {
        method: "POST",
        headers: fm.headers(),
        body: JSON.stringify({
          model,
          messages: [{ role: "user", content: "x" }],
          options: { num_predict: tokens },
        }),
      });
      assert.equal(res.status, 202);
      return (await res.json()).job_id as string;
    };
    const asyncIds = [
      await submit("tiny-a", 200),
      await submit("tiny-b", 5),
      await submit("tiny-a", 5),
    ];
    // A sync caller waiting in the queue, whose connection dies with foreman.
    const sync = fetch(fm.url + "/api/chat", {
      method: "POST",
      headers: fm.headers(),
      body: JSON.stringify({ model: "tiny-c", messages: [{ role: "user", content: "x" }] }),
    }).catch(() => "connection lost");
    await waitFor(async () => {
      const j = await (await fetch(`${fm.url}/jobs/${asyncIds[0]}`, { headers: fm.headers() }))
        .json();
      return j.state === "working";
    });
    await fm.kill();
    assert.equal(await sync, "connection lost");

    // The database is intact and still shows the interrupted job as working.
    const db = new DatabaseSync(fm.dbPath, { readOnly: true });
    assert.equal(db.prepare("PRAGMA integrity_check").get()!.integrity_check, "ok");
    assert.equal(
      db.prepare("SELECT state FROM jobs WHERE id = ?").get(asyncIds[0]!)!.state,
      "working",
    );
    db.close();

    await fm.restart();
    await fm.waitForOutput("recovered jobs interrupted by a restart");
    const jobs = await waitFor(async () => {
      const all = await Promise.all(
        asyncIds.map(async (
          id,
        ) => (await (await fetch(`${fm.url}/jobs/${id}`, { headers: fm.headers() })).json())),
      );
      return all.every((j) => j.state === "done") && all;
    }, { timeout: 30_000, what: "every async job to finish" });
    assert.equal(jobs[0].attempt, 2, "the interrupted job ran again");
    const cancelled =
      await (await fetch(`${fm.url}/jobs?state=cancelled`, { headers: fm.headers() })).json();
    assert.equal(cancelled.jobs.length, 1, "the sync job whose caller died is cancelled");
    assert.equal(cancelled.jobs[0].model, "tiny-c:latest");
    for (const state of ["loading", "working", "queued"]) {
      const left = await (await fetch(`${fm.url}/jobs?state=${state}`, { headers: fm.headers() }))
        .json();
      assert.equal(left.jobs.length, 0, `nothing left ${state}`);
    }
    const fresh = await fetch(fm.url + "/api/chat", {
      method: "POST",
      headers: fm.headers(),
      body: JSON.stringify({ model: "tiny-b", stream: false, messages: [] }),
    });
    assert.equal((await fresh.json()).done, true);
  } finally {
    await close();
  }
});

Deno.test("a sync job taken straight from its caller by an idle worker and killed while it works is cancelled at the next start, its events in order", async () => {
  const { fm, close } = await startStack({
    sim: { loadMs: 0, tokenMs: 20 },
    args: ["--poll-interval", "60s"],
  });
  try {
    const chat = (tokens: number) =>
      fetch(fm.url + "/api/chat", {
        method: "POST",
        headers: fm.headers(),
        body: JSON.stringify({
          model: "tiny-a",
          messages: [{ role: "user", content: "x" }],
          options: { num_predict: tokens },
        }),
      });
    // The model resident and the worker idle: the next job is inserted, claimed and started in
    // one transaction (the fold).
    await (await chat(1)).text();
    const res = await chat(500);
    const id = res.headers.get("x-foreman-job-id")!;
    await res.body!.getReader().read(); // it works: the first chunk came
    await fm.kill();

    await fm.restart();
    const db = new DatabaseSync(fm.dbPath, { readOnly: true });
    try {
      assert.equal(db.prepare("PRAGMA integrity_check").get()!.integrity_check, "ok");
      const job = db.prepare("SELECT state, error FROM jobs WHERE id = ?").get(id)!;
      assert.deepEqual([job.state, job.error], [
        "cancelled",
        "caller went away: foreman restarted",
      ]);
      const events = db.prepare("SELECT job_state, body FROM outbox WHERE job_id = ? ORDER BY seq")
        .all(id);
      assert.deepEqual(events.map((e) => e.job_state), [
        "queued",
        "loading",
        "working",
        "cancelled",
      ]);
      assert.deepEqual(
        events.map((e) => JSON.parse(String(e.body)).previous_state),
        [null, "queued", "loading", "working"],
      );
    } finally {
      db.close();
    }
  } finally {
    await close();
  }
});
