// Group commit (ADR-0015): inserts asked for in the same turn share one transaction, nobody gets a
// job before it is stored, and a row that cannot be stored fails only its own insert.

import assert from "node:assert/strict";
import { GroupCommit } from "../src/queue/group_commit.ts";
import { type NewJob, Store } from "../src/queue/store.ts";
import { openStore } from "./support/store.ts";

const job = (model = "a:latest"): NewJob => ({
  kind: "async",
  endpoint: "chat",
  model,
  request: "{}",
});

function open(): Store {
  return openStore(`${Deno.makeTempDirSync()}/q.db`);
}

Deno.test("inserts asked for in one turn are stored together, after the turn", async () => {
  const store = open();
  const gc = new GroupCommit(store);
  const stored = [gc.insert(job()), gc.insert(job()), gc.insert(job())];
  assert.equal(gc.pending, 3);
  assert.equal(store.countQueued(), 0, "nothing is stored before the group commits");
  const jobs = await Promise.all(stored);
  assert.equal(gc.pending, 0);
  assert.equal(store.countQueued(), 3);
  assert.ok(jobs[0]!.id < jobs[1]!.id && jobs[1]!.id < jobs[2]!.id);
  for (const j of jobs) assert.equal(store.get(j.id)?.state, "queued");
  store.close();
});

Deno.test("a full group commits at once", () => {
  const store = open();
  const gc = new GroupCommit(store, { maxBatch: 2 });
  void gc.insert(job());
  void gc.insert(job());
  assert.equal(store.countQueued(), 2);
  assert.equal(gc.pending, 0);
  store.close();
});

Deno.test("a row that cannot be stored fails only its own insert", async () => {
  const store = open();
  const gc = new GroupCommit(store);
  const good = gc.insert(job());
  const bad = gc.insert(job("")); // the schema refuses an empty model
  assert.equal((await good).state, "queued");
  await assert.rejects(bad);
  assert.equal(store.countQueued(), 1);
  store.close();
});
