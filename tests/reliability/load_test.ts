// Load suite: many concurrent sync callers queued on one model are all served, in the order they
// were accepted, with bounded memory while /healthz and /metrics stay responsive; a full queue
// answers 503 at once; an embedding flood does not slow the worker down.

import assert from "node:assert/strict";
import { type ForemanProcess, startForeman, waitFor } from "../../harness/foreman.ts";
import { OllamaSim } from "../../sim/mod.ts";
import { alive, call, cleanup, report, rssMiB, scale, stopWithin } from "./support.ts";

const CLIENTS = scale(200, 1000);

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}

/** Polls `path` every 50 ms until stopped; returns each answer's latency in ms. */
function probe(fm: ForemanProcess, path: string, auth: boolean) {
  const latencies: number[] = [];
  let running = true;
  const done = (async () => {
    while (running) {
      const t0 = performance.now();
      const res = await fetch(fm.url + path, {
        headers: auth ? fm.headers() : {},
        signal: AbortSignal.timeout(10_000),
      });
      await res.text();
      assert.equal(res.status, 200, path);
      latencies.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await done;
      return latencies.sort((a, b) => a - b);
    },
  };
}

Deno.test(`${CLIENTS} concurrent sync callers on one model are all served in order with bounded memory; health and metrics stay responsive`, async () => {
  const sim = await OllamaSim.start({ loadMs: 5, tokenMs: 3 });
  const fm = await startForeman({ ollamaUrl: sim.url, args: ["--poll-interval", "1s"] });
  try {
    // Warm the model, so every request after this is a queued generation.
    assert.equal(
      (await call(fm, "POST", "/api/chat", { model: "tiny-a", stream: false })).status,
      200,
    );
    const rssStart = rssMiB(fm.pid);
    let rssPeak = rssStart;
    const sampler = setInterval(() => rssPeak = Math.max(rssPeak, rssMiB(fm.pid)), 100);
    const health = probe(fm, "/healthz", true);
    const metrics = probe(fm, "/metrics", true);
    const started = performance.now();
    const answers = await Promise.all(Array.from({ length: CLIENTS }, async (_, i) => {
      const stream = i % 2 === 0;
      const res = await fetch(fm.url + "/api/chat", {
        method: "POST",
        headers: fm.headers(),
        body: JSON.stringify({
          model: "tiny-a",
          stream,
          messages: [{ role: "user", content: `client ${i}` }],
          options: { num_predict: 3 },
        }),
      });
      const text = await res.text();
      const last = JSON.parse(text.trim().split("\n").at(-1)!);
      return {
        i,
        status: res.status,
        done: last.done === true,
        id: res.headers.get("x-foreman-job-id")!,
      };
    }));
    const seconds = (performance.now() - started) / 1000;
    clearInterval(sampler);
    const healthMs = await health.stop();
    const metricsMs = await metrics.stop();

    assert.ok(answers.every((a) => a.status === 200 && a.done), "every caller got a full answer");
    assert.equal(new Set(answers.map((a) => a.id)).size, CLIENTS);
    // The order the target saw them in is the order foreman accepted them (ids are ULIDs).
    const idOf = new Map(answers.map((a) => [`client ${a.i}`, a.id]));
    const seen = sim.requests
      .filter((r) => r.path === "/api/chat")
      .map((r) => (r.body as { messages?: { content: string }[] }).messages?.[0]?.content)
      .filter((c): c is string => c !== undefined && idOf.has(c))
      .map((c) => idOf.get(c)!);
    assert.equal(seen.length, CLIENTS, "each ran exactly once");
    assert.deepEqual(seen, [...seen].sort(), "served in the order they were accepted");
    assert.equal(sim.maxConcurrent("tiny-a"), 1, "one generation at a time");
    assert.ok(alive(fm.pid));

    const growth = rssPeak - rssStart;
    assert.ok(growth < scale(150, 400), `memory grew ${growth} MiB for ${CLIENTS} callers`);
    // Not behind the callers: a probe that waited for the queue would take most of the run, which
    // a loaded machine stretches as much as the probes.
    const responsive = Math.max(1000, (seconds * 1000) / 2);
    assert.ok(quantile(healthMs, 1) < responsive, `slowest /healthz ${quantile(healthMs, 1)} ms`);
    assert.ok(quantile(metricsMs, 1) < responsive, `slowest /metrics ${quantile(metricsMs, 1)} ms`);
    await report("load-sync-callers", {
      clients: CLIENTS,
      seconds: Number(seconds.toFixed(1)),
      jobs_per_s: Math.round(CLIENTS / seconds),
      rss_start_mib: Math.round(rssStart),
      rss_peak_mib: Math.round(rssPeak),
      healthz_ms: {
        p50: Math.round(quantile(healthMs, 0.5)),
        p99: Math.round(quantile(healthMs, 0.99)),
        max: Math.round(quantile(healthMs, 1)),
      },
      metrics_ms: {
        p50: Math.round(quantile(metricsMs, 0.5)),
        p99: Math.round(quantile(metricsMs, 0.99)),
        max: Math.round(quantile(metricsMs, 1)),
      },
    });
    await stopWithin(fm);
  } finally {
    await cleanup(() => fm.kill(), () => sim.close());
  }
});

Deno.test("a full queue answers 503 at once in Ollama's shape, and the accepted jobs still run", async () => {
  const sim = await OllamaSim.start({ loadMs: 5, tokenMs: 2 });
  const maxQueue = 20;
  const fm = await startForeman({
    ollamaUrl: sim.url,
    args: ["--poll-interval", "1s", "--max-queue", String(maxQueue)],
  });
  try {
    // The first job stalls at the target, so everything after it waits in the queue.
    sim.stallNext(1);
    const body = {
      model: "tiny-a",
      messages: [{ role: "user", content: "x" }],
      options: { num_predict: 2 },
    };
    const first = await call(fm, "POST", "/jobs", body);
    await waitFor(async () =>
      (await call(fm, "GET", `/jobs/${first.json.job_id}`)).json.state !== "queued"
    );
    const accepted: string[] = [String(first.json.job_id)];
    const refusals: number[] = [];
    const refuse = async (path: string, payload: unknown) => {
      const t0 = performance.now();
      const r = await call(fm, "POST", path, payload);
      if (r.status === 202) return accepted.push(String(r.json.job_id));
      assert.equal(r.status, 503, `${path}: ${JSON.stringify(r.json)}`);
      assert.match(r.json.error, /FOREMAN_MAX_QUEUE/);
      refusals.push(performance.now() - t0);
    };
    for (let i = 0; i < maxQueue + 10; i++) await refuse("/jobs", body);
    assert.equal(
      accepted.length,
      maxQueue + 1,
      "the queue holds max_queue jobs besides the running one",
    );
    // Sync callers meet the same limit.
    for (let i = 0; i < 5; i++) await refuse("/api/chat", { ...body, stream: false });
    assert.ok(refusals.length >= 15, `${refusals.length} refusals`);
    const slowest = Math.max(...refusals);
    assert.ok(slowest < 500, `the slowest 503 took ${slowest} ms`);
    // Free the stalled job; every accepted job then runs.
    assert.equal((await call(fm, "DELETE", `/jobs/${accepted[0]}`)).status, 200);
    await waitFor(async () => {
      const states = await Promise.all(
        accepted.slice(1).map(async (id) => (await call(fm, "GET", `/jobs/${id}`)).json.state),
      );
      return states.every((s) => s === "done");
    }, { timeout: 30_000, what: "the accepted jobs to run" });
    await report("load-full-queue", {
      max_queue: maxQueue,
      refused: refusals.length,
      slowest_503_ms: Math.round(slowest),
    });
  } finally {
    await cleanup(() => fm.kill(), () => sim.close());
  }
});

Deno.test("an embedding flood at high concurrency does not slow the worker down", async () => {
  const sim = await OllamaSim.start({ loadMs: 5, tokenMs: 2 });
  const fm = await startForeman({
    ollamaUrl: sim.url,
    args: ["--poll-interval", "1s", "--embed-model", "embed-e"],
  });
  try {
    const jobs = scale(40, 200);
    const run = async (tag: string) => {
      const t0 = performance.now();
      await Promise.all(Array.from({ length: jobs }, (_, i) =>
        call(fm, "POST", "/api/chat", {
          model: "tiny-a",
          stream: false,
          messages: [{ role: "user", content: `${tag} ${i}` }],
          options: { num_predict: 4 },
        }).then((r) => assert.equal(r.status, 200))));
      return performance.now() - t0;
    };
    await run("warm");
    const quiet = await run("quiet");

    let flooding = true;
    let embeds = 0;
    const concurrency = scale(64, 256);
    const flood = Promise.all(Array.from({ length: concurrency }, async () => {
      while (flooding) {
        const r = await call(fm, "POST", "/api/embed", {
          model: "embed-e",
          input: ["a", "b", "c"],
        });
        assert.equal(r.status, 200);
        embeds++;
      }
    }));
    // Let the flood reach full concurrency before measuring.
    await waitFor(() => embeds >= concurrency);
    const before = embeds;
    const busy = await run("busy");
    const during = embeds - before;
    flooding = false;
    await flood;

    assert.ok(during > jobs, `the flood ran alongside (${during} embeddings)`);
    // The worker's chat jobs take no more than twice as long with the flood going (a shared
    // 2-core machine; the embeddings are served concurrently, not queued behind the jobs).
    assert.ok(
      busy < quiet * 2 + 500,
      `${jobs} chat jobs: ${quiet} ms quiet, ${busy} ms under flood`,
    );
    await report("load-embed-flood", {
      chat_jobs: jobs,
      embed_concurrency: concurrency,
      embeddings_during: during,
      chat_ms_quiet: Math.round(quiet),
      chat_ms_under_flood: Math.round(busy),
    });
  } finally {
    await cleanup(() => fm.kill(), () => sim.close());
  }
});
