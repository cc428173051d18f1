// Metrics and logs of a real foreman process: /metrics parses as Prometheus text and carries every
// family operators rely on; every log line is one JSON object and no secret ever appears.

import assert from "node:assert/strict";
import { startForeman, waitFor } from "../harness/foreman.ts";
import { OllamaSim } from "../sim/mod.ts";
import { startReceiver } from "../harness/receiver.ts";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A small parser for the Prometheus text exposition format (what a scraper reads). */
function parseProm(text: string): { types: Map<string, string>; samples: Sample[] } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const type = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      types.set(type[1]!, type[2]!);
      continue;
    }
    if (line.startsWith("# HELP ")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (
      const [, label = "", text = ""] of (m[2] ?? "").matchAll(
        /([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g,
      )
    ) {
      labels[label] = text;
    }
    const value = Number(m[3] === "+Inf" ? Infinity : m[3]);
    assert.ok(!Number.isNaN(value), line);
    samples.push({ name: m[1]!, labels, value });
  }
  return { types, samples };
}

Deno.test("GET /metrics is Prometheus text with queue, outcome, duration, swap, target, webhook and embed figures", async () => {
  const sim = await OllamaSim.start({ loadMs: 5, tokenMs: 1 });
  const hook = await startReceiver();
  const secret = "metrics-webhook-secret";
  const fm = await startForeman({
    ollamaUrl: sim.url,
    args: [
      "--poll-interval",
      "1s",
      "--webhook-hosts",
      `127.0.0.1:${hook.port}`,
      "--log-level",
      "debug",
    ],
    env: { FOREMAN_WEBHOOK_SECRET: secret },
  });
  try {
    for (const model of ["tiny-a", "tiny-b"]) {
      const r = await fetch(fm.url + "/api/chat", {
        method: "POST",
        headers: fm.headers(),
        body: JSON.stringify({ model, stream: false, messages: [{ role: "user", content: "x" }] }),
      });
      await r.json();
    }
    await (await fetch(fm.url + "/api/embed", {
      method: "POST",
      headers: fm.headers(),
      body: JSON.stringify({ model: "embed-e", input: "x" }),
    })).json();
    await (await fetch(fm.url + "/jobs", {
      method: "POST",
      headers: fm.headers(),
      body: JSON.stringify({ model: "tiny-b", messages: [], state_webhook_url: `${hook.url}/h` }),
    })).json();
    await waitFor(() => hook.delivered().length === 4);

    const res = await fetch(fm.url + "/metrics", { headers: fm.headers() });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
    const { types, samples } = parseProm(await res.text());
    const value = (name: string, labels: Record<string, string> = {}) =>
      samples.find((s) =>
        s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
      )
        ?.value;

    assert.equal(types.get("foreman_jobs"), "gauge");
    assert.equal(value("foreman_jobs", { state: "done" }), 3);
    assert.equal(value("foreman_jobs", { state: "queued" }), 0);
    assert.equal(types.get("foreman_jobs_finished_total"), "counter");
    assert.equal(value("foreman_jobs_finished_total", { outcome: "done" }), 3);
    assert.equal(types.get("foreman_job_wait_seconds"), "histogram");
    assert.equal(value("foreman_job_wait_seconds_count"), 3);
    assert.equal(value("foreman_job_wait_seconds_bucket", { le: "+Inf" }), 3);
    assert.equal(types.get("foreman_job_run_seconds"), "histogram");
    assert.equal(value("foreman_model_swaps_total"), 1);
    assert.equal(value("foreman_target_up"), 1);
    assert.ok(value("foreman_inventory_age_seconds")! >= 0);
    assert.equal(value("foreman_webhook_deliveries_total", { outcome: "delivered" }), 4);
    assert.equal(value("foreman_embed_requests_total", { route: "/api/embed", status: "200" }), 1);
    assert.equal(types.get("foreman_webhook_events"), "gauge");
  } finally {
    await fm.stop();
    await hook.close();
    await sim.close();
  }
  // Logs: one JSON object per line with time, level and msg; no token or secret anywhere.
  const lines = fm.output().trim().split("\n");
  assert.ok(lines.length > 5);
  for (const line of lines) {
    const entry = JSON.parse(line);
    assert.equal(typeof entry.time, "string");
    assert.ok(["debug", "info", "warn", "error"].includes(entry.level), line);
    assert.equal(typeof entry.msg, "string");
  }
  assert.ok(lines.some((l) => JSON.parse(l).job_id && JSON.parse(l).model && JSON.parse(l).state));
  assert.ok(!fm.output().includes(fm.token));
  assert.ok(!fm.output().includes("metrics-webhook-secret"));
});

Deno.test("the log level setting hides lines below it", async () => {
  const sim = await OllamaSim.start({ loadMs: 5, tokenMs: 1 });
  const fm = await startForeman({ ollamaUrl: sim.url, args: ["--log-level", "warn"] });
  try {
    const r = await fetch(fm.url + "/api/chat", {
      method: "POST",
      headers: fm.headers(),
      body: JSON.stringify({ model: "tiny-a", stream: false, messages: [] }),
    });
    await r.json();
  } finally {
    await fm.stop();
    await sim.close();
  }
  const levels = fm.output().trim().split("\n").filter(Boolean).map((l) => JSON.parse(l).level);
  assert.ok(levels.every((l) => l === "warn" || l === "error"), levels.join(","));
});
