import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { fileURLToPath } from "node:url";
import { Webhook } from "standardwebhooks";
import { ConfigError, loadConfig } from "../src/config.ts";
import { createLogger, silentLogger } from "../src/log.ts";
import { Metrics } from "../src/metrics.ts";
import { Store } from "../src/queue/store.ts";
import { Dispatcher, parseRetryAfter } from "../src/webhooks/dispatcher.ts";
import { webhookUrlProblem } from "../src/webhooks/policy.ts";
import { secretKey, signatureHeaders, webhookSecretProblem } from "../src/webhooks/signing.ts";
import { waitFor } from "../harness/foreman.ts";
import { startReceiver } from "../harness/receiver.ts";
import { report } from "./reliability/support.ts";

Deno.test("webhook URLs are allowed only for listed hosts, with the port when one is listed", () => {
  const hosts = ["hooks.example.com", "127.0.0.1:9000"];
  assert.equal(webhookUrlProblem("https://hooks.example.com/x", hosts), undefined);
  assert.equal(webhookUrlProblem("http://hooks.example.com:8080/x", hosts), undefined);
  assert.equal(webhookUrlProblem("http://127.0.0.1:9000/x", hosts), undefined);
  assert.match(webhookUrlProblem("http://127.0.0.1:9001/x", hosts)!, /FOREMAN_WEBHOOK_HOSTS/);
  assert.match(webhookUrlProblem("https://evil.example.com/x", hosts)!, /FOREMAN_WEBHOOK_HOSTS/);
  assert.match(webhookUrlProblem("https://hooks.example.com.evil.io/", hosts)!, /not allowed/);
  assert.match(webhookUrlProblem("ftp://hooks.example.com/", hosts)!, /http or https/);
  assert.match(webhookUrlProblem("https://u:p@hooks.example.com/", hosts)!, /credentials/);
  assert.match(webhookUrlProblem("not a url", hosts)!, /not a URL/);
  assert.match(webhookUrlProblem("https://hooks.example.com/", [])!, /FOREMAN_WEBHOOK_HOSTS/);
});

Deno.test("signatures verify with the standardwebhooks package for whsec_ and plain secrets", () => {
  const body = JSON.stringify({ job_id: "01J", state: "done" });
  const id = "msg_01JABC";
  const timestamp = Math.floor(Date.now() / 1000);
  for (
    const secret of ["whsec_" + btoa("0123456789abcdef0123456789abcdef"), "plain-secret-value"]
  ) {
    const headers: Record<string, string> = {
      "webhook-id": id,
      "webhook-timestamp": String(timestamp),
      ...signatureHeaders(secretKey(secret), { id, timestamp, body }),
    };
    // The package takes a whsec_ secret as is; a raw secret is passed as its bytes, base64-encoded.
    const wh = new Webhook(
      secret.startsWith("whsec_") ? secret : btoa(secret),
    );
    assert.deepEqual(wh.verify(body, headers), JSON.parse(body));
    const hex = createHmac("sha256", secretKey(secret)).update(body).digest("hex");
    assert.equal(headers["x-foreman-signature"], `sha256=${hex}`);
    assert.throws(() => wh.verify(body + " ", headers));
  }
});

Deno.test("Retry-After is read as seconds or an HTTP date and capped at an hour", () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  assert.equal(parseRetryAfter("3", now), 3000);
  assert.equal(parseRetryAfter("Thu, 01 Jan 2026 00:00:10 GMT", now), 10_000);
  assert.equal(parseRetryAfter("999999", now), 3_600_000);
  assert.equal(parseRetryAfter("soon", now), undefined);
  assert.equal(parseRetryAfter(null, now), undefined);
});

function outboxFixture(
  url: string,
  options: Partial<ConstructorParameters<typeof Dispatcher>[0]> = {},
) {
  const dir = Deno.makeTempDirSync();
  const clock = { t: Date.now() };
  const store = new Store(`${dir}/q.db`, {
    now: () => clock.t,
    renderEvent: (job, { previous: prev }) =>
      JSON.stringify({ job_id: job.id, state: job.state, previous_state: prev }),
  });
  const metrics = new Metrics();
  const dispatcher = new Dispatcher({
    outbox: store.outbox,
    log: silentLogger,
    metrics,
    secret: "whsec_" + btoa("k".repeat(32)),
    maxAttempts: 3,
    retryBase: 1000,
    timeout: 2000,
    now: () => clock.t,
    random: () => 0.5,
    ...options,
  });
  const job = store.insertJob({
    kind: "async",
    endpoint: "chat",
    model: "a:latest",
    request: "{}",
    webhookUrl: url,
  });
  return { store, dispatcher, job, clock, metrics };
}

Deno.test("a receiver answering 500 then 200 gets the same event again after a backoff", async () => {
  const receiver = await startReceiver({ statuses: [500, 200] });
  try {
    const { store, dispatcher, clock, job } = outboxFixture(receiver.url + "/hook");
    assert.deepEqual(await Promise.all(dispatcher.runOnce()), ["retry"]);
    assert.deepEqual(dispatcher.runOnce(), [], "not due before the backoff passes");
    clock.t += 60_000;
    assert.deepEqual(await Promise.all(dispatcher.runOnce()), ["delivered"]);
    assert.equal(receiver.received.length, 2);
    assert.equal(
      receiver.received[0]!.headers.get("webhook-id"),
      receiver.received[1]!.headers.get("webhook-id"),
    );
    assert.equal(receiver.received[0]!.body, receiver.received[1]!.body);
    assert.equal(store.outbox.summary(job.id)!.delivered, 1);
    store.close();
  } finally {
    await receiver.close();
  }
});

Deno.test("Retry-After from a 429 sets the next attempt", async () => {
  const receiver = await startReceiver({ statuses: [429], headers: { "retry-after": "7" } });
  try {
    const { store, dispatcher, clock } = outboxFixture(receiver.url + "/hook");
    await Promise.all(dispatcher.runOnce());
    assert.equal(store.outbox.nextDueAt(), clock.t + 7000);
    store.close();
  } finally {
    await receiver.close();
  }
});

Deno.test("410 Gone stops every delivery for the job; redirects are not followed", async () => {
  const receiver = await startReceiver({ statuses: [410] });
  const redirect = await startReceiver({
    statuses: [302],
    headers: { location: "http://127.0.0.1:1/" },
  });
  try {
    const gone = outboxFixture(receiver.url + "/hook");
    gone.store.transition("claim", gone.job.id);
    assert.deepEqual(await Promise.all(gone.dispatcher.runOnce()), ["dead"]);
    assert.equal(gone.store.outbox.summary(gone.job.id)!.dead, 2, "the later event is dead too");
    const moved = outboxFixture(redirect.url + "/hook");
    assert.deepEqual(await Promise.all(moved.dispatcher.runOnce()), ["retry"]);
    assert.equal(redirect.received.length, 1);
    assert.match(
      moved.store.outbox.summary(moved.job.id)!.lastError!,
      /redirects are not followed/,
    );
    gone.store.close();
    moved.store.close();
  } finally {
    await receiver.close();
    await redirect.close();
  }
});

Deno.test("an event is dead after the last attempt and stays visible", async () => {
  const { store, dispatcher, clock, job, metrics } = outboxFixture(
    "http://127.0.0.1:9/unreachable",
    {
      maxAttempts: 2,
    },
  );
  assert.deepEqual(await Promise.all(dispatcher.runOnce()), ["retry"]);
  clock.t += 60_000;
  assert.deepEqual(await Promise.all(dispatcher.runOnce()), ["dead"]);
  const summary = store.outbox.summary(job.id)!;
  assert.equal(summary.dead, 1);
  assert.match(summary.lastError!, /cannot reach receiver/);
  assert.equal(metrics.webhookDeliveries.get({ outcome: "dead" }), 1);
  store.close();
});

Deno.test("a delivery whose event was settled meanwhile is logged, not recorded", async () => {
  const receiver = await startReceiver({ statuses: [200] });
  const lines: string[] = [];
  try {
    const { store, dispatcher, job } = outboxFixture(receiver.url + "/hook", {
      log: createLogger({ write: (line) => lines.push(line) }),
    });
    const [event] = store.outbox.due(1);
    assert.ok(event);
    store.outbox.markJobEventsDead(job.id, "receiver answered 410 Gone");
    assert.equal(await dispatcher.deliver(event), "delivered");
    assert.deepEqual(store.outbox.countByState(), { pending: 0, delivered: 0, dead: 1 });
    const warned = lines.map((l) => JSON.parse(l)).filter((l) => l.level === "warn");
    assert.deepEqual(warned.map((l) => [l.msg, l.event_id]), [
      ["webhook event was settled elsewhere, this attempt's outcome is not recorded", event.id],
    ]);
    store.close();
  } finally {
    await receiver.close();
  }
});

Deno.test("a slow receiver times out and is retried", async () => {
  const receiver = await startReceiver({ delayMs: 1500 });
  try {
    const { store, dispatcher, job } = outboxFixture(receiver.url + "/hook", { timeout: 200 });
    assert.deepEqual(await Promise.all(dispatcher.runOnce()), ["retry"]);
    assert.match(store.outbox.summary(job.id)!.lastError!, /did not answer within 200 ms/);
    store.close();
  } finally {
    await receiver.close();
  }
});

/** Counts the dispatcher's questions to the outbox: each loop turn asks one or two. */
function countOutboxQueries(store: Store): { n: number } {
  const count = { n: 0 };
  const { outbox } = store;
  const due = outbox.due.bind(outbox);
  const next = outbox.nextDueAt.bind(outbox);
  outbox.due = (...args) => (count.n++, due(...args));
  outbox.nextDueAt = (...args) => (count.n++, next(...args));
  return count;
}

/** A store on the real clock with `jobs` webhook jobs, each with its four lifecycle events. */
function jobsWithEvents(url: string, jobs: number): Store {
  const store = new Store(`${Deno.makeTempDirSync()}/q.db`, {
    renderEvent: (job, { previous: prev }) =>
      JSON.stringify({ job_id: job.id, state: job.state, previous_state: prev }),
  });
  store.tx(() => {
    for (let i = 0; i < jobs; i++) {
      const job = store.insertJob({
        kind: "async",
        endpoint: "chat",
        model: "a:latest",
        request: "{}",
        webhookUrl: url,
      });
      store.transition("claim", job.id);
      store.transition("startWorking", job.id);
      store.transition("complete", job.id, { result: "{}" });
    }
  });
  return store;
}

Deno.test("with 500 failing receivers the dispatcher sleeps until the earliest retry", async () => {
  const receiver = await startReceiver({ statuses: [500] });
  const store = jobsWithEvents(receiver.url + "/hook", 500);
  const dispatcher = new Dispatcher({
    outbox: store.outbox,
    log: silentLogger,
    metrics: new Metrics(),
    secret: "",
    maxAttempts: 12,
    // The first retry falls due 7.5 minutes after each failure: however slowly the 500 first
    // attempts go on a loaded machine, none is due again during the window below.
    retryBase: 600_000,
    timeout: 5000,
    random: () => 0.5,
  });
  const stop = new AbortController();
  const loop = dispatcher.start(stop.signal);
  try {
    const attempted = store.db.prepare("SELECT count(*) AS n FROM outbox WHERE attempts > 0");
    await waitFor(() => attempted.get()!.n === 500, {
      timeout: 60_000,
      what: "every job's first event to fail once",
    });
    // Every first event now waits for its retry; the three events behind each one cannot be sent
    // before it, however long ago they fell due.
    const queries = countOutboxQueries(store);
    const window = 1000;
    await new Promise((r) => setTimeout(r, window));
    await report("dispatcher idle with failing receivers", {
      jobs: 500,
      held_events: 1500,
      outbox_queries_per_s: queries.n / (window / 1000),
    });
    assert.ok(queries.n <= 4, `${queries.n} outbox queries in ${window} ms with nothing due`);
    assert.equal(receiver.received.length, 500, "no event was sent before its turn");
  } finally {
    stop.abort();
    await loop;
    store.close();
    await receiver.close();
  }
});

Deno.test("while deliveries are in flight the dispatcher waits for them instead of polling", async () => {
  const receiver = await startReceiver({ delayMs: 400 });
  const store = jobsWithEvents(receiver.url + "/hook", 24);
  const queries = countOutboxQueries(store);
  const dispatcher = new Dispatcher({
    outbox: store.outbox,
    log: silentLogger,
    metrics: new Metrics(),
    secret: "",
    maxAttempts: 3,
    retryBase: 1000,
    timeout: 5000,
    concurrency: 8,
  });
  const stop = new AbortController();
  const loop = dispatcher.start(stop.signal);
  try {
    await waitFor(() => store.outbox.countByState().delivered === 96, {
      timeout: 60_000,
      what: "all 96 events to be delivered",
    });
    // One loop turn (at most two outbox queries) per finished delivery, plus the first turn.
    await report("dispatcher with slow receivers", {
      deliveries: 96,
      receiver_delay_ms: 400,
      outbox_queries: queries.n,
    });
    assert.ok(queries.n <= 2 * 96 + 4, `${queries.n} outbox queries for 96 deliveries`);
  } finally {
    stop.abort();
    await loop;
    store.close();
    await receiver.close();
  }
});

const bytes = (n: number) => "whsec_" + btoa(String.fromCharCode(...new Uint8Array(n).fill(7)));

Deno.test("a whsec_ secret must be strict base64 of 24 to 64 bytes; a plain one 16 bytes", () => {
  const refused: [string, RegExp][] = [
    ["whsec_", /standard base64/],
    ["whsec_!!!!", /standard base64/],
    ["whsec_" + "a".repeat(43), /standard base64/], // 32 bytes without its padding
    [bytes(32).replace("=", "") + "!=", /standard base64/],
    [bytes(32).slice(0, 10) + " " + bytes(32).slice(10), /standard base64/],
    [bytes(32).replaceAll("B", "-"), /standard base64/], // the URL-safe alphabet
    ["whsec_QR==", /standard base64/], // not the canonical encoding of its one byte
    [bytes(23), /decodes to 23 bytes: a whsec_ key must be 24 to 64 bytes/],
    [bytes(65), /decodes to 65 bytes/],
    ["fifteen-bytes!!", /is 15 bytes: a plain secret must be at least 16 bytes/],
  ];
  for (const [secret, why] of refused) {
    assert.match(webhookSecretProblem(secret) ?? "accepted", why, secret);
    assert.throws(() => secretKey(secret), RangeError, secret);
  }
  for (const secret of [bytes(24), bytes(64), "sixteen-bytes!!!"]) {
    assert.equal(webhookSecretProblem(secret), undefined, secret);
  }
  assert.equal(secretKey(bytes(24)).byteLength, 24);
});

Deno.test("a webhook secret that would give a guessable key stops loading with one line", () => {
  const noFile = (path: string): string => {
    throw new Deno.errors.NotFound(path);
  };
  for (const secret of ["whsec_", "whsec_!!!!", bytes(8), "short"]) {
    const env = (name: string) => name === "FOREMAN_WEBHOOK_SECRET" ? secret : undefined;
    assert.throws(() => loadConfig({ env, readFile: noFile }), ConfigError, secret);
  }
  const message = (secret: string) => {
    try {
      loadConfig({ flags: { "webhook-secret": secret }, env: () => undefined, readFile: noFile });
    } catch (err) {
      return (err as Error).message;
    }
    return "accepted";
  };
  assert.equal(
    message("whsec_!!!!"),
    "Invalid FOREMAN_WEBHOOK_SECRET from --webhook-secret: (redacted) is not whsec_ followed by " +
      "standard base64 (A-Z a-z 0-9 + /, padded with =)",
  );
  assert.doesNotMatch(message("whsec_c2VjcmV0LWtleQ=="), /c2VjcmV0LWtleQ/);
  assert.equal(message(""), "accepted", "an empty secret leaves events unsigned");
});

Deno.test("deno task start refuses a bad webhook secret in one line that does not show it", async () => {
  const secret = "whsec_bm90LWEta2V5";
  const config = await Deno.makeTempFile({ suffix: ".toml" });
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "start", "--addr", "127.0.0.1:0", "--config", config],
    cwd: fileURLToPath(new URL("..", import.meta.url)),
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "", NO_COLOR: "1", FOREMAN_WEBHOOK_SECRET: secret },
    // Were the secret taken, foreman would serve on: stop it so the test fails instead of hanging.
    signal: AbortSignal.timeout(20_000),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  await Deno.remove(config);
  const stderr = new TextDecoder().decode(out.stderr);
  // Besides foreman's line, stderr only has deno task's own "Task start …" echo.
  const lines = stderr.split("\n").filter((l) => l !== "" && !l.startsWith("Task start"));
  assert.equal(out.code, 2, stderr);
  assert.deepEqual(lines, [
    "foreman: Invalid FOREMAN_WEBHOOK_SECRET from FOREMAN_WEBHOOK_SECRET: (redacted) decodes to " +
    "9 bytes: a whsec_ key must be 24 to 64 bytes (Standard Webhooks)",
  ]);
  assert.ok(!stderr.includes("bm90LWEta2V5"), stderr);
});
