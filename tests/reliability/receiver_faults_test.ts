// Receiver-fault suite: webhook receivers that are down, slow, failing, rate-limiting, gone or
// redirecting. Deliveries retry by the rules, dead ones show in GET /jobs/{id} and /metrics, and
// no receiver ever holds up a job.

import assert from "node:assert/strict";
import { type ForemanProcess, startForeman, waitFor } from "../../harness/foreman.ts";
import { OllamaSim } from "../../sim/mod.ts";
import { call, Hook, type HookAnswer, metric, report, scale } from "./support.ts";

const MAX_ATTEMPTS = 4;
const TIMEOUT_MS = 300;

/** What each path of the misbehaving receiver answers. */
function misbehave(path: string, attempt: number): HookAnswer {
  switch (path) {
    case "/fail":
      return { status: 500 };
    case "/slow":
      return { status: 200, delayMs: TIMEOUT_MS * 4 };
    case "/limit":
      return attempt === 1 ? { status: 429, headers: { "retry-after": "1" } } : { status: 200 };
    case "/gone":
      return { status: 410 };
    case "/redirect":
      return { status: 307, headers: { location: "/followed" } };
    default:
      return { status: 200 };
  }
}

async function stack() {
  const sim = await OllamaSim.start({ loadMs: 5, tokenMs: 5 });
  const hook = await Hook.start(misbehave);
  const away = await Hook.start();
  await away.down();
  const fm = await startForeman({
    ollamaUrl: sim.url,
    args: [
      "--poll-interval",
      "1s",
      "--webhook-hosts",
      `${hook.host},${away.host}`,
      "--webhook-retry-base",
      "50ms",
      "--webhook-max-attempts",
      String(MAX_ATTEMPTS),
      "--webhook-timeout",
      `${TIMEOUT_MS}ms`,
    ],
    env: { FOREMAN_WEBHOOK_SECRET: "receiver-faults-secret" },
  });
  return {
    sim,
    hook,
    away,
    fm,
    close: async () => {
      await fm.stop();
      await hook.close();
      await away.close();
      await sim.close();
    },
  };
}

function jobBody(webhook: string | undefined, tokens = 4) {
  return {
    model: "tiny-a",
    messages: [{ role: "user", content: "x" }],
    options: { num_predict: tokens },
    ...(webhook ? { state_webhook_url: webhook } : {}),
  };
}

async function submit(fm: ForemanProcess, webhook?: string, tokens = 4): Promise<string> {
  const r = await call(fm, "POST", "/jobs", jobBody(webhook, tokens));
  assert.equal(r.status, 202);
  return String(r.json.job_id);
}

async function job(fm: ForemanProcess, id: string) {
  return (await call(fm, "GET", `/jobs/${id}`)).json;
}

/** Waits until the job is done and none of its events is pending; returns its view. */
async function settled(fm: ForemanProcess, id: string, timeout = 20_000) {
  return await waitFor(async () => {
    const j = await job(fm, id);
    return j.state === "done" && j.webhook?.pending === 0 && j;
  }, { timeout, what: `job ${id} and its events to settle` });
}

Deno.test("each receiver fault is retried by the rules and its dead events show in the job and in /metrics", async () => {
  const { hook, away, fm, close } = await stack();
  try {
    const ids = {
      fail: await submit(fm, `${hook.url}/fail`),
      slow: await submit(fm, `${hook.url}/slow`),
      limit: await submit(fm, `${hook.url}/limit`),
      gone: await submit(fm, `${hook.url}/gone`, 40),
      redirect: await submit(fm, `${hook.url}/redirect`),
      away: await submit(fm, `${away.url}/events`),
    };
    const sent = (path: string) => hook.deliveries.filter((d) => d.path === path);

    // 500: four attempts per event, then dead; later events follow one by one, also dead.
    const fail = await settled(fm, ids.fail);
    assert.deepEqual(fail.webhook, {
      url: `${hook.url}/fail`,
      pending: 0,
      delivered: 0,
      dead: 4,
      last_error: "receiver answered 500",
    });
    assert.equal(sent("/fail").length, 4 * MAX_ATTEMPTS);

    // 429 with Retry-After: 1 is honoured, then each event is delivered once.
    const limit = await settled(fm, ids.limit);
    assert.equal(limit.webhook.delivered, 4);
    const limited = sent("/limit");
    const firstRetry = limited.find((d, i) => i > 0 && d.id === limited[0]!.id)!;
    const waitedMs = firstRetry.at - limited[0]!.at;
    assert.ok(waitedMs >= 950, `retried ${waitedMs} ms after a 429 with Retry-After: 1`);

    // 410: that event and every later one of the job are dead; nothing more is sent.
    const gone = await settled(fm, ids.gone);
    assert.equal(gone.webhook.delivered, 0);
    assert.equal(gone.webhook.dead, 4, "events written after the 410 are dead as well");
    assert.equal(sent("/gone").length, 1, "a receiver that said 410 is never called again");

    // 3xx is not followed and counts as a failed attempt.
    const redirect = await settled(fm, ids.redirect);
    assert.equal(redirect.webhook.dead, 4);
    assert.match(redirect.webhook.last_error, /redirects are not followed/);
    assert.equal(sent("/followed").length, 0);

    // A receiver slower than the webhook timeout: every attempt times out, then dead.
    const slow = await settled(fm, ids.slow, 30_000);
    assert.equal(slow.webhook.dead, 4);
    assert.match(slow.webhook.last_error, /did not answer within 300 ms/);

    // A receiver that is down and comes back gets the events still in their attempts.
    const awayJob = await job(fm, ids.away);
    assert.equal(awayJob.state, "done", "the job finished while its receiver was down");
    assert.ok(awayJob.webhook.pending + awayJob.webhook.dead === 4);

    const metrics = await (await fetch(fm.url + "/metrics", { headers: fm.headers() })).text();
    const deadDeliveries = metric(metrics, "foreman_webhook_deliveries_total", { outcome: "dead" });
    assert.ok(deadDeliveries >= 4 * 4, `${deadDeliveries} dead deliveries counted`);
    const views = await Promise.all(Object.values(ids).map((id) => job(fm, id)));
    assert.equal(
      metric(metrics, "foreman_webhook_events", { state: "dead" }),
      views.reduce((n, v) => n + v.webhook.dead, 0),
      "the dead-events gauge matches the jobs",
    );
    await report("receiver-faults", {
      dead_deliveries_metric: deadDeliveries,
      retry_after_wait_ms: waitedMs,
    });
    await away.up();
  } finally {
    await close();
  }
});

Deno.test("a receiver that is down for a while gets every event in order once it is back", async () => {
  const { away, fm, close } = await stack();
  try {
    await away.up();
    await away.down();
    const ids = [await submit(fm, `${away.url}/events`), await submit(fm, `${away.url}/events`)];
    await waitFor(async () => (await job(fm, ids[1]!)).state === "done", { what: "jobs done" });
    // Down through at least one failed attempt per job, then back.
    await waitFor(async () => (await job(fm, ids[1]!)).webhook.last_error !== null);
    await away.up();
    for (const id of ids) {
      const j = await settled(fm, id);
      assert.equal(j.webhook.delivered, 4);
      const states = away.ok().filter((d) => d.event.job_id === id).map((d) => d.event.state);
      assert.deepEqual(states, ["queued", "loading", "working", "done"]);
    }
  } finally {
    await close();
  }
});

Deno.test("slow and failing receivers never hold up jobs or a healthy receiver's events", async () => {
  const { hook, fm, close } = await stack();
  try {
    const bad = scale(16, 100);
    const started = performance.now();
    const broken: string[] = [];
    for (let i = 0; i < bad; i++) {
      broken.push(await submit(fm, `${hook.url}/${i % 2 ? "slow" : "fail"}`, 2));
    }
    const plain: string[] = [];
    for (let i = 0; i < 5; i++) plain.push(await submit(fm, undefined, 2));
    const healthy = await submit(fm, `${hook.url}/ok`, 2);
    // Jobs finish at the worker's pace, whatever their receivers do.
    await waitFor(async () => {
      const all = await Promise.all([...broken, ...plain, healthy].map((id) => job(fm, id)));
      return all.every((j) => j.state === "done");
    }, { timeout: 20_000, what: "every job to finish" });
    const jobsDoneMs = performance.now() - started;
    // The healthy receiver hears the done event although slow ones occupy delivery slots.
    await waitFor(
      () => hook.ok().some((d) => d.path === "/ok" && d.event.state === "done"),
      { timeout: 20_000, what: "the healthy receiver's done event" },
    );
    const healthyDoneMs = performance.now() - started;
    assert.ok(jobsDoneMs < 10_000, `jobs took ${jobsDoneMs} ms`);
    await report("receiver-faults-isolation", {
      broken_receivers: bad,
      all_jobs_done_ms: Math.round(jobsDoneMs),
      healthy_done_event_ms: Math.round(healthyDoneMs),
    });
  } finally {
    await close();
  }
});
