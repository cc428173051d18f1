// Commit durability by what a commit protects (ADR-0015): sync-job rows commit without waiting for
// the disk, everything else with synchronous=FULL, and the connection always returns to FULL.

import assert from "node:assert/strict";
import { Store, TransitionError } from "../src/queue/store.ts";
import { openStore } from "./support/store.ts";

const level = (store: Store) => Number(store.db.prepare("PRAGMA synchronous").get()!.synchronous);
const FULL = 2;
const NORMAL = 1;

function open(): Store {
  return openStore(`${Deno.makeTempDirSync()}/q.db`);
}

Deno.test("a non-durable transaction commits at NORMAL and leaves the connection at FULL", () => {
  const store = open();
  assert.equal(level(store), FULL);
  assert.equal(store.tx(() => level(store), { durable: false }), NORMAL);
  assert.equal(store.tx(() => level(store)), FULL);
  assert.equal(level(store), FULL);
  store.close();
});

Deno.test("a failing non-durable transaction rolls back and still restores FULL", () => {
  const store = open();
  const job = store.insertJob({ kind: "sync", endpoint: "chat", model: "a:latest", request: "{}" });
  assert.throws(() => store.transition("complete", job.id, { result: "{}" }), TransitionError);
  assert.equal(level(store), FULL);
  assert.equal(store.get(job.id)!.state, "queued");
  store.close();
});

Deno.test("sync and async jobs both move through their transitions with the safety level kept", () => {
  const store = open();
  for (const kind of ["sync", "async"] as const) {
    const job = store.insertJob({ kind, endpoint: "chat", model: "a:latest", request: "{}" });
    store.transition("claim", job.id);
    store.transition("startWorking", job.id);
    assert.equal(store.transition("complete", job.id, { result: "{}" }).state, "done");
    assert.equal(level(store), FULL);
  }
  store.close();
});

Deno.test("a store opened at NORMAL stays at NORMAL", () => {
  const store = openStore(`${Deno.makeTempDirSync()}/q.db`, { synchronous: "NORMAL" });
  assert.equal(store.tx(() => level(store), { durable: false }), NORMAL);
  assert.equal(level(store), NORMAL);
  store.close();
});

Deno.test("the queued count stays in step with the table through inserts, moves and rollbacks", () => {
  const store = open();
  const counted = () =>
    Number(store.db.prepare("SELECT count(*) AS n FROM jobs WHERE state = 'queued'").get()!.n);
  const add = () =>
    store.insertJob({ kind: "async", endpoint: "chat", model: "a:latest", request: "{}" });
  const check = () => assert.equal(store.countQueued(), counted());
  check();
  const [a, b, c] = [add(), add(), add()];
  check();
  store.transition("claim", a.id);
  check();
  store.transition("requeue", a.id, { error: "x", notBefore: 0, refund: true });
  check();
  store.transition("cancel", b.id, { error: "gone" });
  check();
  store.transition("claim", c.id);
  store.transition("startWorking", c.id);
  store.transition("complete", c.id, { result: "{}" });
  check();
  assert.throws(() =>
    store.insertJobs([
      { kind: "async", endpoint: "chat", model: "a:latest", request: "{}" },
      { kind: "async", endpoint: "chat", model: "", request: "{}" },
    ])
  );
  check();
  store.insertJobs([{ kind: "sync", endpoint: "chat", model: "b:latest", request: "{}" }]);
  check();
  store.close();
});
