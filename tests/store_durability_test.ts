// Commit durability by what a commit protects (ADR-0015): sync-job rows commit without waiting for
// the disk, everything else with synchronous=FULL; between transactions the connection rests at
// NORMAL, so a commit that need not wait sets nothing.

import assert from "node:assert/strict";
import { Store, TransitionError } from "../src/queue/store.ts";
import { openStore } from "./support/store.ts";

const level = (store: Store) => Number(store.db.prepare("PRAGMA synchronous").get()!.synchronous);
const FULL = 2;
const NORMAL = 1;

function open(): Store {
  return openStore(`${Deno.makeTempDirSync()}/q.db`);
}

Deno.test("a durable transaction commits at FULL, a non-durable one at NORMAL, and the connection rests at NORMAL", () => {
  const store = open();
  assert.equal(level(store), NORMAL);
  assert.equal(store.tx(() => level(store), { durable: false }), NORMAL);
  assert.equal(store.tx(() => level(store)), FULL);
  assert.equal(level(store), NORMAL);
  store.close();
});

Deno.test("a failing durable transaction rolls back and still returns the connection to NORMAL", () => {
  const store = open();
  const job = store.insertJob({
    kind: "async",
    endpoint: "chat",
    model: "a:latest",
    request: "{}",
  });
  assert.throws(() => store.transition("complete", job.id, { result: "{}" }), TransitionError);
  assert.throws(() => store.tx(() => assert.fail("inside a durable transaction")));
  assert.equal(level(store), NORMAL);
  assert.equal(store.get(job.id)!.state, "queued");
  store.close();
});

Deno.test("each commit of a job runs at its kind's level, named by id or by reference, alone or together", () => {
  // The renderer runs inside the transaction of the event it renders: it reads the level there.
  const levels: string[] = [];
  const store: Store = openStore(`${Deno.makeTempDirSync()}/q.db`, {
    renderEvent: (job) => {
      levels.push(`${job.state} ${level(store) === FULL ? "FULL" : "NORMAL"}`);
      return "{}";
    },
  });
  for (const kind of ["sync", "async"] as const) {
    const at = kind === "sync" ? "NORMAL" : "FULL";
    const job = store.insertJob({ kind, endpoint: "chat", model: "a:latest", request: "{}" });
    store.transition("claim", job.id);
    store.transition("startWorking", job);
    assert.equal(store.transition("complete", job, { result: "{}" }).state, "done");
    assert.deepEqual(levels.splice(0), [
      `queued ${at}`,
      `loading ${at}`,
      `working ${at}`,
      `done ${at}`,
    ]);
    assert.equal(level(store), NORMAL);
  }
  // Several changes in one transaction wait for the disk if any of their jobs needs it.
  const sync = store.insertJob({
    kind: "sync",
    endpoint: "chat",
    model: "a:latest",
    request: "{}",
  });
  const async = store.insertJob({
    kind: "async",
    endpoint: "chat",
    model: "a:latest",
    request: "{}",
  });
  levels.splice(0);
  store.txFor([sync], () => store.transition("claim", sync));
  store.txFor([sync, async], () => {
    store.transition("startWorking", sync);
    store.transition("claim", async);
  });
  assert.deepEqual(levels, ["loading NORMAL", "working FULL", "loading FULL"]);
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
