import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { MIGRATIONS, SCHEMA_VERSION } from "../src/queue/schema.ts";
import {
  ACTIVE_STATES,
  ENDPOINTS,
  EVENT_STATES,
  JOB_STATES,
  TERMINAL_STATES,
} from "../src/queue/states.ts";
import { Store, TransitionError } from "../src/queue/store.ts";
import { openStore } from "./support/store.ts";

function fixture(now = { t: 1_700_000_000_000 }) {
  const dir = Deno.makeTempDirSync();
  const events: string[] = [];
  const store = new Store(`${dir}/q.db`, {
    now: () => now.t,
    renderEvent: (job, { previous: prev }) => {
      events.push(`${prev}->${job.state}`);
      return JSON.stringify({ job_id: job.id, state: job.state, previous_state: prev });
    },
  });
  const add = (model: string, extra: Partial<Parameters<Store["insertJob"]>[0]> = {}) =>
    store.insertJob({ kind: "async", endpoint: "chat", model, request: "{}", ...extra });
  return { store, add, now, events, dir };
}

Deno.test("a job moves through named transitions and each writes one outbox event", () => {
  const { store, add, events } = fixture();
  const job = add("a:latest", { webhookUrl: "http://127.0.0.1/hook" });
  store.transition("claim", job.id);
  store.transition("startWorking", job.id);
  const done = store.transition("complete", job.id, { result: '{"done":true}' });
  assert.equal(done.state, "done");
  assert.equal(done.attempt, 1);
  assert.ok(done.finishedAt !== null);
  assert.deepEqual(events, [
    "null->queued",
    "queued->loading",
    "loading->working",
    "working->done",
  ]);
  assert.equal(store.outbox.countByState().pending, 4);
  store.close();
});

Deno.test("a transition from the wrong state is refused and changes nothing", () => {
  const { store, add } = fixture();
  const job = add("a:latest", { webhookUrl: "http://127.0.0.1/hook" });
  assert.throws(() => store.transition("startWorking", job.id), TransitionError);
  assert.throws(() => store.transition("complete", job.id, { result: "{}" }), TransitionError);
  assert.equal(store.get(job.id)!.state, "queued");
  assert.equal(store.outbox.countByState().pending, 1);
  assert.equal(store.tryTransition("startWorking", job.id), undefined);
  store.close();
});

Deno.test("each transition takes the values it needs and writes exactly those", () => {
  const { store, add, now } = fixture();
  const job = add("a:latest");
  // Checked by `deno task check`: an unused @ts-expect-error fails it.
  const wrongCalls = () => {
    // @ts-expect-error complete needs a result
    store.transition("complete", job.id);
    // @ts-expect-error requeue needs a not-before time and whether the attempt is refunded
    store.transition("requeue", job.id, { error: "down" });
    // @ts-expect-error fail needs an error, not a result
    store.transition("fail", job.id, { result: "{}" });
    // @ts-expect-error artifacts belong to complete
    store.transition("cancel", job.id, { error: "gone", artifacts: [] });
  };
  void wrongCalls;
  store.transition("claim", job.id);
  const requeued = store.transition("requeue", job.id, {
    error: "down",
    notBefore: now.t + 500,
    refund: true,
  });
  assert.deepEqual([requeued.state, requeued.error, requeued.notBefore, requeued.attempt], [
    "queued",
    "down",
    now.t + 500,
    0,
  ]);
  now.t += 500;
  store.transition("claim", job.id);
  const again = store.transition("requeue", job.id, { error: "500", notBefore: 0, refund: false });
  assert.equal(again.attempt, 1, "a retryable error keeps the attempt");
  store.transition("claim", job.id);
  store.transition("startWorking", job.id);
  const body = new TextEncoder().encode('{"done":true}');
  const done = store.transition("complete", job.id, {
    result: '{"done":true}',
    artifacts: [{
      name: "completion",
      contentType: "application/json",
      size: body.byteLength,
      sha256: "0".repeat(64),
      body,
    }],
  });
  assert.deepEqual([done.state, done.result, done.attempt], ["done", '{"done":true}', 2]);
  assert.deepEqual(store.artifacts.list(job.id).map((a) => a.name), ["completion"]);
  const failed = store.transition("fail", add("b:latest").id, { error: "refused" });
  assert.deepEqual([failed.state, failed.error], ["failed", "refused"]);
  store.close();
});

Deno.test("the schema's state CHECKs and indexes list exactly the states in states.ts", () => {
  const { store } = fixture();
  const sql = (name: string) =>
    String(store.db.prepare("SELECT sql FROM sqlite_master WHERE name = ?").get(name)!.sql);
  const lists = (text: string) =>
    [...text.matchAll(/state IN \(([^)]*)\)/g)].map((m) =>
      m[1]!.split(",").map((s) => s.trim().replace(/^'|'$/g, ""))
    );
  assert.deepEqual(lists(sql("jobs")), [[...JOB_STATES], [...TERMINAL_STATES]]);
  assert.deepEqual(lists(sql("outbox")), [[...JOB_STATES], [...EVENT_STATES]]);
  assert.deepEqual(lists(sql("jobs_active")), [[...ACTIVE_STATES]]);
  const endpoints = /endpoint IN \(([^)]*)\)/.exec(sql("jobs"))![1]!.split(",")
    .map((s) => s.trim().replace(/^'|'$/g, ""));
  assert.deepEqual(endpoints, [...ENDPOINTS], "and the endpoint CHECK lists exactly ENDPOINTS");
  store.close();
});

Deno.test("the schema's CHECK constraints refuse impossible rows", () => {
  const { store, add } = fixture();
  const job = add("a:latest");
  assert.throws(() => store.db.exec(`UPDATE jobs SET state = 'exploded' WHERE id = '${job.id}'`));
  assert.throws(() => store.db.exec(`UPDATE jobs SET state = 'done' WHERE id = '${job.id}'`));
  assert.throws(() => store.db.exec(`UPDATE jobs SET attempt = -1 WHERE id = '${job.id}'`));
  assert.throws(() =>
    store.insertJob({
      kind: "sync",
      endpoint: "chat",
      model: "a",
      request: "{}",
      webhookUrl: "http://x",
    })
  );
  store.close();
});

Deno.test("a job without a webhook leaves local events that are never sent or counted", () => {
  const { store, events } = fixture();
  const job = store.insertJob({ kind: "sync", endpoint: "chat", model: "a:latest", request: "{}" });
  store.transition("claim", job.id);
  store.transition("cancel", job.id, { error: "gone" });
  assert.deepEqual(events, ["null->queued", "queued->loading", "loading->cancelled"]);
  const rows = store.db.prepare(
    `SELECT job_state, url, state, held, attempts, next_attempt_at, last_status, last_error
     FROM outbox WHERE job_id = ? ORDER BY seq`,
  ).all(job.id);
  assert.deepEqual(rows.map((r) => [r.job_state, r.url, r.state, r.next_attempt_at]), [
    ["queued", null, "local", null],
    ["loading", null, "local", null],
    ["cancelled", null, "local", null],
  ]);
  assert.deepEqual(store.outbox.due(10), []);
  assert.equal(store.outbox.nextDueAt(), undefined);
  assert.deepEqual(store.outbox.countByState(), { pending: 0, delivered: 0, dead: 0 });
  assert.equal(store.outbox.summary(job.id), null, "no webhook, no webhook summary");
  store.close();
});

Deno.test("the schema keeps a local event's delivery columns empty", () => {
  const { store } = fixture();
  const job = store.insertJob({ kind: "sync", endpoint: "chat", model: "a:latest", request: "{}" });
  const where = `WHERE job_id = '${job.id}'`;
  for (
    const set of [
      "state = 'pending'",
      "url = 'http://127.0.0.1/hook'",
      "next_attempt_at = 1",
      "attempts = 1",
      "held = 1",
      "last_error = 'x'",
      "job_state = 'exploded'",
    ]
  ) {
    assert.throws(() => store.db.exec(`UPDATE outbox SET ${set} ${where}`), /CHECK/, set);
  }
  const hooked = store.insertJob({
    kind: "async",
    endpoint: "chat",
    model: "a:latest",
    request: "{}",
    webhookUrl: "http://127.0.0.1/hook",
  });
  assert.throws(
    () => store.db.exec(`UPDATE outbox SET state = 'local' WHERE job_id = '${hooked.id}'`),
    /CHECK/,
  );
  store.close();
});

Deno.test("a job's events read back in order: the latest, those after one, and where one sits", () => {
  const { store, add } = fixture();
  const job = add("a:latest");
  const other = add("b:latest");
  store.transition("claim", job.id);
  store.transition("startWorking", job.id);
  const all = store.outbox.eventsAfter(job.id, 0);
  assert.deepEqual(all.map((e) => e.state), ["queued", "loading", "working"]);
  assert.ok(all.every((e) => /^msg_[0-9A-Z]{26}$/.test(e.id)));
  assert.deepEqual(all.map((e) => JSON.parse(e.body).state), ["queued", "loading", "working"]);
  assert.deepEqual(store.outbox.latestEvent(job.id), all[2]);
  const [, second] = all;
  assert.equal(store.outbox.eventSeq(job.id, second!.id), second!.seq);
  assert.deepEqual(store.outbox.eventsAfter(job.id, second!.seq), [all[2]]);
  assert.equal(store.outbox.eventSeq(other.id, second!.id), undefined, "not the other job's");
  assert.equal(store.outbox.eventSeq(job.id, "msg_nope"), undefined);
  assert.equal(store.outbox.latestEvent("01HF7YAT00QJ9A35Z6DQVV42M1"), undefined);
  store.close();
});

Deno.test("listeners hear of a job's event after its transaction commits, never of a rollback", () => {
  const { store, add } = fixture();
  const heard: string[] = [];
  store.onEvent((id) => heard.push(`${id}:${store.get(id)?.state}`));
  const job = add("a:latest");
  assert.deepEqual(heard, [`${job.id}:queued`]);
  store.tx(() => {
    store.transition("claim", job.id);
    store.transition("startWorking", job.id);
    assert.equal(heard.length, 1, "nothing is heard inside the transaction");
  });
  assert.deepEqual(heard.slice(1), [`${job.id}:working`, `${job.id}:working`]);
  assert.throws(() =>
    store.tx(() => {
      store.transition("complete", job.id, { result: "{}" });
      throw new Error("roll back");
    })
  );
  assert.equal(heard.length, 3, "a rolled-back change is never heard");
  assert.equal(store.get(job.id)!.state, "working");
  store.close();
});

Deno.test("a queued job for the resident model runs before an older job for another model", () => {
  const { store, add } = fixture();
  const a1 = add("a:latest");
  const b1 = add("b:latest");
  const a2 = add("a:latest");
  assert.equal(store.next(undefined)!.id, a1.id, "nothing resident: oldest first");
  assert.equal(store.next("b:latest")!.id, b1.id);
  store.transition("claim", b1.id);
  assert.equal(store.next("b:latest")!.id, a1.id, "no b left: oldest overall");
  assert.equal(store.next("a:latest")!.id, a1.id);
  void a2;
  store.close();
});

Deno.test("drain-by-model orders an interleaved backlog with one swap per model", () => {
  const { store, add } = fixture();
  for (let i = 0; i < 4; i++) for (const m of ["a", "b", "c"]) add(`${m}:latest`);
  let resident: string | undefined;
  const order: string[] = [];
  for (let job = store.next(resident); job; job = store.next(resident)) {
    store.transition("claim", job.id);
    store.transition("startWorking", job.id);
    store.transition("complete", job.id, { result: "{}" });
    resident = job.model;
    order.push(job.model[0]!);
  }
  assert.equal(order.join(""), "aaaabbbbcccc");
});

Deno.test("max_wait lets a job that waited too long jump the resident model's queue", () => {
  const { store, add, now } = fixture();
  const old = add("b:latest");
  now.t += 10_000;
  add("a:latest");
  assert.equal(store.next("a:latest", { maxWait: 60_000 })!.model, "a:latest");
  assert.equal(store.next("a:latest", { maxWait: 5_000 })!.id, old.id);
});

Deno.test("a backed-off job waits until not_before", () => {
  const { store, add, now } = fixture();
  const job = add("a:latest");
  store.transition("claim", job.id);
  store.transition("requeue", job.id, { error: "down", notBefore: now.t + 1000, refund: true });
  assert.equal(store.get(job.id)!.attempt, 0, "connection failures give the attempt back");
  assert.equal(store.next(undefined), undefined);
  assert.equal(store.nextReadyAt(), now.t + 1000);
  now.t += 1000;
  assert.equal(store.next(undefined)!.id, job.id);
});

Deno.test("recovery requeues interrupted async jobs and cancels sync jobs whose callers are gone", () => {
  const { store, add } = fixture();
  const running = add("a:latest");
  store.transition("claim", running.id);
  store.transition("startWorking", running.id);
  const exhausted = add("a:latest");
  for (let i = 0; i < 3; i++) {
    store.transition("claim", exhausted.id);
    if (i < 2) {
      store.transition("requeue", exhausted.id, { error: "500", notBefore: 0, refund: false });
    }
  }
  const sync = store.insertJob({
    kind: "sync",
    endpoint: "chat",
    model: "a:latest",
    request: "{}",
  });
  const queued = add("b:latest");
  const r = store.recover(3);
  assert.deepEqual(r.requeued, [running.id]);
  assert.deepEqual(r.failed, [exhausted.id]);
  assert.deepEqual(r.cancelled, [sync.id]);
  assert.equal(store.get(running.id)!.state, "queued");
  assert.equal(store.get(queued.id)!.state, "queued");
  assert.equal(store.active().length, 0);
});

Deno.test("position follows the order the worker will take jobs in", () => {
  const { store, add } = fixture();
  const a1 = add("a:latest");
  const b1 = add("b:latest");
  const a2 = add("a:latest");
  const c1 = add("c:latest");
  const b2 = add("b:latest");
  const pos = (id: string, resident?: string) => store.position(store.get(id)!, resident);
  assert.deepEqual([a1, a2, b1, b2, c1].map((j) => pos(j.id)), [1, 2, 3, 4, 5]);
  assert.deepEqual([b1, b2, a1, a2, c1].map((j) => pos(j.id, "b:latest")), [1, 2, 3, 4, 5]);
});

Deno.test("outbox events of one job are due one at a time, in order", () => {
  const { store, add, now } = fixture();
  const job = add("a:latest", { webhookUrl: "http://127.0.0.1/hook" });
  store.transition("claim", job.id);
  const due = store.outbox.due(10);
  assert.equal(due.length, 1);
  assert.match(due[0]!.body, /"state":"queued"/);
  store.outbox.markRetry(due[0]!.id, { status: 500, error: "500", nextAt: now.t + 5000 });
  assert.equal(store.outbox.due(10).length, 0, "the second event waits behind the first");
  now.t += 5000;
  const again = store.outbox.due(10);
  assert.equal(again[0]!.id, due[0]!.id, "same webhook-id on retry");
  store.outbox.markDelivered(again[0]!.id, 200);
  assert.match(store.outbox.due(10)[0]!.body, /"state":"loading"/);
  const summary = store.outbox.summary(job.id)!;
  assert.equal(summary.delivered, 1);
  assert.equal(summary.pending, 1);
});

Deno.test("settling an event that is no longer pending changes nothing and says so", () => {
  const { store, add } = fixture();
  const job = add("a:latest", { webhookUrl: "http://127.0.0.1/hook" });
  store.transition("claim", job.id);
  const [first] = store.outbox.due(10);
  assert.ok(first);
  assert.equal(store.outbox.markDelivered(first.id, 200), true);
  assert.equal(store.outbox.markDelivered(first.id, 200), false, "delivered already");
  assert.equal(store.outbox.markRetry(first.id, { status: 500, error: "x", nextAt: 0 }), false);
  assert.equal(store.outbox.markDead("msg_none", { status: null, error: "x" }), false);
  assert.equal(store.outbox.markJobEventsDead(job.id, "receiver answered 410 Gone"), 1);
  assert.equal(store.outbox.markJobEventsDead(job.id, "receiver answered 410 Gone"), 0);
  assert.deepEqual(store.outbox.countByState(), { pending: 0, delivered: 1, dead: 1 });
  store.close();
});

Deno.test("the pruner's query removes only finished jobs older than the cutoff, with their rows", () => {
  const { store, add, now } = fixture();
  const done = add("a:latest", { webhookUrl: "http://127.0.0.1/hook" });
  store.transition("claim", done.id);
  store.transition("startWorking", done.id);
  store.transition("complete", done.id, {
    result: "{}",
    artifacts: [{
      name: "completion",
      contentType: "application/json",
      size: 2,
      sha256: "0".repeat(64),
      body: new TextEncoder().encode("{}"),
    }],
  });
  for (let e = store.outbox.due(1)[0]; e; e = store.outbox.due(1)[0]) {
    store.outbox.markDelivered(e.id, 200);
  }
  const queued = add("a:latest");
  now.t += 100_000;
  assert.equal(store.prune(now.t - 50_000), 1);
  assert.equal(store.get(done.id), undefined);
  assert.equal(store.artifacts.list(done.id).length, 0);
  assert.deepEqual(store.outbox.countByState(), { pending: 0, delivered: 0, dead: 0 });
  assert.equal(store.get(queued.id)!.state, "queued");
  assert.equal(store.integrityCheck(), "ok");
});

Deno.test("only the first pending event of each job sets when the next event falls due", () => {
  const { store, add, now } = fixture();
  const a = add("a:latest", { webhookUrl: "http://127.0.0.1/hook" });
  const [queued] = store.outbox.due(10);
  assert.ok(queued);
  store.outbox.markRetry(queued.id, { status: 500, error: "500", nextAt: now.t + 5000 });
  store.transition("claim", a.id);
  store.transition("startWorking", a.id);
  assert.equal(store.outbox.nextDueAt(), now.t + 5000, "events behind a failing one are not due");
  const b = add("b:latest", { webhookUrl: "http://127.0.0.1/hook" });
  const [bQueued] = store.outbox.due(10);
  assert.ok(bQueued);
  assert.equal(bQueued.jobId, b.id);
  assert.equal(store.outbox.nextDueAt(), now.t);
  assert.equal(
    store.outbox.nextDueAt(new Set([bQueued.id])),
    now.t + 5000,
    "in flight: not counted",
  );
  store.outbox.markDelivered(bQueued.id, 200);
  now.t += 5000;
  store.outbox.markDelivered(queued.id, 200);
  assert.match(store.outbox.due(10)[0]!.body, /"state":"loading"/, "the next one is released");
  assert.equal(store.outbox.nextDueAt(), now.t - 5000, "released with the time it was written");
});

Deno.test("a database from schema version 1 opens with its rows, bodies last, events held back", () => {
  const dir = Deno.makeTempDirSync();
  const old = new DatabaseSync(`${dir}/q.db`);
  old.exec("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT");
  old.exec(MIGRATIONS[0]!);
  old.exec("INSERT INTO meta VALUES ('schema_version', '1')");
  const id = "01HF7YAT00QJ9A35Z6DQVV42M1";
  old.exec(`INSERT INTO jobs (id, kind, endpoint, model, state, request, webhook_url, attempt,
    started_at, created_at, updated_at) VALUES ('${id}', 'async', 'chat', 'a:latest', 'working',
    '{}', 'http://127.0.0.1/hook', 1, 1, 1, 1)`);
  const events = [[1, "delivered", 1, "queued"], [2, "pending", 9000, "loading"], [
    3,
    "pending",
    2,
    "working",
  ]] as const;
  for (const [seq, state, at, jobState] of events) {
    old.exec(`INSERT INTO outbox (seq, id, job_id, url, body, state, next_attempt_at, created_at,
      delivered_at) VALUES (${seq}, 'msg_${seq}', '${id}', 'http://127.0.0.1/hook',
      '{"state":"${jobState}"}', '${state}', ${at}, 1,
      ${state === "delivered" ? 1 : "NULL"})`);
  }
  old.exec(`INSERT INTO artifacts VALUES ('${id}', 'completion', 'application/json', 2,
    '${"0".repeat(64)}', x'7b7d')`);
  old.close();
  const now = { t: 5000 };
  const store = openStore(`${dir}/q.db`, { now: () => now.t });
  assert.equal(store.getMeta("schema_version"), String(SCHEMA_VERSION));
  const columns = store.db.prepare("PRAGMA table_info(jobs)").all().map((c) => c.name);
  assert.deepEqual(columns.slice(-3), ["metadata", "request", "result"]);
  assert.equal(store.get(id)!.state, "working");
  assert.equal(store.artifacts.list(id).length, 1, "the rebuild did not cascade to artifacts");
  assert.equal(store.outbox.summary(id)!.pending, 2, "nor to events");
  assert.deepEqual(
    store.outbox.eventsAfter(id, 0).map((e) => [e.id, e.state]),
    [["msg_1", "queued"], ["msg_2", "loading"], ["msg_3", "working"]],
    "each event names the state it reports",
  );
  const outboxColumns = store.db.prepare("PRAGMA table_info(outbox)").all().map((c) => c.name);
  assert.equal(outboxColumns.at(-1), "body", "the event body is stored last");
  assert.equal(store.db.prepare("PRAGMA foreign_keys").get()!.foreign_keys, 1);
  assert.deepEqual(store.db.prepare("PRAGMA foreign_key_check").all(), []);
  assert.deepEqual(store.outbox.due(10), [], "msg_2 retries at 9000; msg_3 waits behind it");
  assert.equal(store.outbox.nextDueAt(), 9000);
  now.t = 9000;
  assert.deepEqual(store.outbox.due(10).map((e) => e.id), ["msg_2"]);
  store.outbox.markDead("msg_2", { status: 500, error: "500" });
  assert.deepEqual(store.outbox.due(10).map((e) => e.id), ["msg_3"]);
  assert.equal(store.integrityCheck(), "ok");
  const openai = store.insertJob({
    kind: "async",
    endpoint: "openai.chat",
    model: "a:latest",
    request: "{}",
  });
  assert.equal(store.get(openai.id)!.endpoint, "openai.chat", "schema 4 takes /v1 endpoints");
  assert.throws(() =>
    store.db.exec(`UPDATE jobs SET endpoint = 'openai.responses' WHERE id = '${id}'`)
  );
  store.close();
});

Deno.test("a job past its TTL is kept while an event is pending, then pruned once it settles", () => {
  const { store, add, now } = fixture();
  const finish = (id: string) => {
    store.transition("claim", id);
    store.transition("startWorking", id);
    store.transition("complete", id, { result: "{}" });
  };
  const delivered = add("a:latest", { webhookUrl: "http://127.0.0.1/hook" });
  const dead = add("a:latest", { webhookUrl: "http://127.0.0.1/hook" });
  const plain = add("a:latest");
  for (const job of [delivered, dead, plain]) finish(job.id);
  // Four events each, the first failing: nothing of either webhook job has reached its receiver.
  for (const e of store.outbox.due(10)) {
    store.outbox.markRetry(e.id, { status: 503, error: "503", nextAt: now.t + 3_600_000 });
  }
  now.t += 100_000;
  assert.equal(store.prune(now.t - 50_000), 1, "only the job without a webhook goes");
  assert.equal(store.get(plain.id), undefined);
  assert.equal(store.prune(now.t - 50_000), 0, "pending events keep both webhook jobs");
  assert.equal(store.get(delivered.id)!.state, "done");
  now.t += 3_600_000;
  for (const e of store.outbox.due(10)) {
    if (e.jobId === delivered.id) store.outbox.markDelivered(e.id, 200);
    else store.outbox.markDead(e.id, { status: 410, error: "receiver answered 410 Gone" });
  }
  store.outbox.markJobEventsDead(dead.id, "receiver answered 410 Gone");
  assert.equal(store.prune(now.t - 50_000), 1, "all events dead: the job goes");
  assert.equal(store.get(dead.id), undefined);
  assert.equal(store.outbox.summary(delivered.id)!.pending, 3, "the rest still wait their turn");
  for (let e = store.outbox.due(1)[0]; e; e = store.outbox.due(1)[0]) {
    store.outbox.markDelivered(e.id, 200);
  }
  assert.equal(store.prune(now.t - 50_000), 1, "its done event delivered: the job goes");
  assert.equal(store.get(delivered.id), undefined);
  assert.deepEqual(store.outbox.countByState(), { pending: 0, delivered: 0, dead: 0 });
});
