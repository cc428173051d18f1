// The monitoring kit against the real thing: promtool checks and unit-tests the shipped rules; a
// real Prometheus server (Debian's package) scrapes a real foreman with the token from a file and
// evaluates every rule; the queue gauges the alerts rely on report what the store holds. Without
// prometheus and promtool the first two tests say so and are ignored (FOREMAN_PROMETHEUS_REQUIRED=1,
// set by CI, makes that a failure).

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { freePort, startForeman, waitFor } from "../harness/foreman.ts";
import { startStack } from "./support/stack.ts";
import { openStore } from "./support/store.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const RULES = `${ROOT}deploy/prometheus/foreman.rules.yml`;
const RULE_TESTS = `${ROOT}deploy/prometheus/foreman.rules.test.yml`;

/** The absolute path of an executable on PATH, or null. */
function onPath(name: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      const path = `${dir}/${name}`;
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not in this directory
    }
  }
  return null;
}

const prometheus = onPath("prometheus");
const promtool = onPath("promtool");
const missing = [prometheus ? "" : "prometheus", promtool ? "" : "promtool"].filter(Boolean);
const prometheusRequired = Deno.env.get("FOREMAN_PROMETHEUS_REQUIRED") === "1";
if (missing.length && !prometheusRequired) {
  console.log(
    `monitoring tests skipped: ${missing.join(" and ")} not on PATH ` +
      "(Debian: apt-get install --no-install-recommends prometheus)",
  );
}
const needsPrometheus = { ignore: missing.length > 0 && !prometheusRequired };

/** Fails the test when the tools are missing but required (not ignored). */
function assertPrometheus(): void {
  assert.deepEqual(
    missing,
    [],
    `FOREMAN_PROMETHEUS_REQUIRED=1 but ${missing.join(" and ")} not on PATH ` +
      "(Debian: apt-get install --no-install-recommends prometheus)",
  );
}

async function run(bin: string, args: string[]): Promise<{ ok: boolean; out: string }> {
  const out = await new Deno.Command(bin, {
    args,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { ok: out.success, out: text };
}

Deno.test({
  name: "promtool finds the shipped rules valid and every alert's unit test passes",
  ...needsPrometheus,
  fn: async () => {
    assertPrometheus();
    const check = await run(promtool!, ["check", "rules", RULES]);
    assert.ok(check.ok, check.out);
    assert.match(check.out, /SUCCESS: \d+ rules found/);
    const tests = await run(promtool!, ["test", "rules", RULE_TESTS]);
    assert.ok(tests.ok, tests.out);
    // Every alert in the rule file has a unit test.
    const rules = parseYaml(Deno.readTextFileSync(RULES)) as {
      groups: { rules: { alert?: string }[] }[];
    };
    const alerts = rules.groups.flatMap((g) => g.rules).flatMap((r) => r.alert ? [r.alert] : []);
    const tested = Deno.readTextFileSync(RULE_TESTS);
    assert.ok(alerts.length >= 8);
    for (const name of alerts) assert.match(tested, new RegExp(`alertname: ${name}\\n`), name);
  },
});

interface PromServer {
  url: string;
  output(): string;
  stop(): Promise<void>;
}

async function startPrometheus(dir: string, config: unknown): Promise<PromServer> {
  await Deno.writeTextFile(`${dir}/prometheus.yml`, stringifyYaml(config));
  const port = freePort();
  const child = new Deno.Command(prometheus!, {
    args: [
      `--config.file=${dir}/prometheus.yml`,
      `--storage.tsdb.path=${dir}/tsdb`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s.pipeThrough(new TextDecoderStream())) out += chunk;
  };
  const pumping = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // already exited
    }
    await child.status;
    await pumping;
  };
  try {
    await Promise.race([
      waitFor(async () => {
        const res = await fetch(`${url}/-/ready`);
        await res.body?.cancel();
        return res.ok;
      }, { timeout: 30_000, what: "Prometheus to be ready" }),
      child.status.then((s) => {
        throw new Error(`prometheus exited with ${s.code}:\n${out}`);
      }),
    ]);
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, output: () => out, stop };
}

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

async function api<T>(server: PromServer, path: string): Promise<T> {
  const res = await fetch(server.url + path);
  const body = await res.json();
  assert.equal(body.status, "success", JSON.stringify(body));
  return body.data as T;
}

async function query(server: PromServer, expr: string): Promise<Sample[]> {
  const data = await api<{ result: Sample[] }>(
    server,
    `/api/v1/query?query=${encodeURIComponent(expr)}`,
  );
  return data.result;
}

/** Names of the samples a /metrics body carries (histograms as _bucket, _sum, _count). */
function sampleNames(text: string): Set<string> {
  return new Set(
    text.split("\n").filter((l) => l && !l.startsWith("#")).map((l) => /^[^{ ]+/.exec(l)![0]),
  );
}

Deno.test({
  name:
    "a real Prometheus scrapes foreman with the token from a file, evaluates the rules, and sees a wrong token as a target down",
  ...needsPrometheus,
  fn: async () => {
    assertPrometheus();
    const { fm, close } = await startStack({ env: { FOREMAN_MAX_QUEUE: "50" } });
    const dir = await Deno.makeTempDir({ prefix: "foreman-prometheus-" });
    let server: PromServer | undefined;
    try {
      await Deno.writeTextFile(`${dir}/token`, fm.token, { mode: 0o600 });
      await Deno.writeTextFile(`${dir}/wrong-token`, `not-${fm.token}`, { mode: 0o600 });
      // The shipped scrape config, pointed at this foreman and its token file, scraping every
      // second; a second job with a wrong token keeps the job label the alerts key on.
      const shipped = parseYaml(
        Deno.readTextFileSync(`${ROOT}deploy/prometheus/prometheus.yml`),
      ) as { scrape_configs: Record<string, unknown>[] };
      const job = shipped.scrape_configs.find((c) => c.job_name === "foreman")!;
      const target = `127.0.0.1:${fm.port}`;
      const config = {
        global: { scrape_interval: "1s", scrape_timeout: "1s", evaluation_interval: "1s" },
        rule_files: [RULES],
        scrape_configs: [
          {
            ...job,
            authorization: { type: "Bearer", credentials_file: `${dir}/token` },
            static_configs: [{ targets: [target] }],
          },
          {
            ...job,
            job_name: "foreman-wrong-token",
            authorization: { type: "Bearer", credentials_file: `${dir}/wrong-token` },
            static_configs: [{ targets: [target] }],
            relabel_configs: [
              { target_label: "job", replacement: "foreman" },
              { target_label: "instance", replacement: "wrong-token" },
            ],
          },
        ],
      };
      server = await startPrometheus(dir, config);

      // A small load in two rounds, each seen by a scrape, so that counters have a rate: chats for
      // two models (a swap), and embeddings.
      const post = async (path: string, body: unknown) => {
        const res = await fetch(fm.url + path, {
          method: "POST",
          headers: fm.headers(),
          body: JSON.stringify(body),
        });
        assert.equal(res.status, 200, await res.clone().text());
        await res.body?.cancel();
      };
      const round = () =>
        Promise.all([
          ...["tiny-a", "tiny-b", "tiny-a"].map((model) =>
            post("/api/chat", { model, stream: false, messages: [{ role: "user", content: "x" }] })
          ),
          post("/api/embed", { model: "embed-e", input: ["x", "y"] }),
        ]);
      const mine = `job="foreman", instance="${target}"`;
      const scraped = (done: number) =>
        waitFor(async () => {
          const r = await query(server!, `foreman_jobs_finished_total{${mine}, outcome="done"}`);
          return r.length === 1 && r[0]!.value[1] === String(done);
        }, { timeout: 20_000, what: `Prometheus to scrape ${done} finished jobs` });
      await round();
      await scraped(3);
      await round();
      await scraped(6);

      // Every series foreman exports reached Prometheus through the authenticated scrape.
      const metrics = await (await fetch(fm.url + "/metrics", { headers: fm.headers() })).text();
      const exported = sampleNames(metrics);
      const stored = await query(server, `group by (__name__) ({${mine}, __name__=~"foreman_.+"})`);
      assert.deepEqual(new Set(stored.map((s) => s.metric.__name__)), exported);
      for (
        const name of [
          "foreman_queue_limit",
          "foreman_oldest_queued_seconds",
          "foreman_target_up",
          "foreman_embed_requests_total",
          "foreman_model_swaps_total",
        ]
      ) {
        assert.ok(exported.has(name), `${name} in /metrics`);
      }
      const limit = await query(server, `foreman_queue_limit{${mine}}`);
      assert.equal(limit[0]?.value[1], "50");

      // The rules evaluate on the real series: rates, ratios and quantiles come out as numbers.
      await waitFor(async () => {
        const r = await query(
          server!,
          `instance_outcome:foreman_jobs_finished:rate5m{${mine}, outcome="done"} > 0`,
        );
        return r.length === 1;
      }, { timeout: 20_000, what: "the throughput recording rule" });
      const ratio = await query(server, `instance:foreman_jobs_queued:ratio_limit{${mine}}`);
      assert.equal(ratio.length, 1);
      assert.ok(Number(ratio[0]!.value[1]) >= 0 && Number(ratio[0]!.value[1]) <= 1);
      const waits = await query(
        server,
        `instance:foreman_job_wait_seconds:quantile_rate5m{${mine}}`,
      );
      assert.deepEqual(waits.map((s) => s.metric.quantile).sort(), ["0.5", "0.95", "0.99"]);
      const embeds = await query(server, `instance_status:foreman_embed_requests:rate5m{${mine}}`);
      assert.deepEqual(embeds.map((s) => s.metric.status), ["200"]);
      // No rule failed to evaluate (a label mismatch in a ratio would show here as an error).
      const { groups } = await api<
        { groups: { rules: { name: string; health: string; lastError?: string }[] }[] }
      >(server, "/api/v1/rules");
      const rules = groups.flatMap((g) => g.rules);
      assert.ok(rules.length >= 20);
      for (const r of rules) assert.equal(r.health, "ok", `${r.name}: ${r.lastError}`);

      // The wrong token: foreman answers 401, the target is down, and ForemanDown is pending.
      await waitFor(async () => {
        const r = await query(server!, `up{job="foreman", instance="wrong-token"} == 0`);
        return r.length === 1;
      }, { timeout: 20_000, what: "up == 0 for the wrong token" });
      const { activeTargets } = await api<
        { activeTargets: { labels: Record<string, string>; health: string; lastError: string }[] }
      >(server, "/api/v1/targets");
      const wrong = activeTargets.find((t) => t.labels.instance === "wrong-token")!;
      assert.equal(wrong.health, "down");
      assert.match(wrong.lastError, /401/);
      assert.equal(activeTargets.find((t) => t.labels.instance === target)?.health, "up");
      await waitFor(async () => {
        const { alerts } = await api<{ alerts: { labels: Record<string, string> }[] }>(
          server!,
          "/api/v1/alerts",
        );
        const down = alerts.filter((a) => a.labels.alertname === "ForemanDown");
        return down.length === 1 && down[0]!.labels.instance === "wrong-token";
      }, { timeout: 20_000, what: "ForemanDown pending for the wrong token only" });
      // foreman never logged the token, and Prometheus never printed it either.
      assert.ok(!server.output().includes(fm.token));
      assert.ok(!fm.output().includes(fm.token));
    } finally {
      await server?.stop();
      await close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("foreman exports its queue limit and how long its oldest queued job has waited", async () => {
  // A target that refuses connections: the worker's first try sends it back to the queue, and a
  // long backoff keeps it there (a retry would take it out of the queue for a moment, and the
  // gauge would follow the next job).
  const fm = await startForeman({
    ollamaUrl: `http://127.0.0.1:${freePort()}`,
    env: { FOREMAN_MAX_QUEUE: "7", FOREMAN_RETRY_BASE: "10m" },
  });
  try {
    const gauge = async (name: string) => {
      const text = await (await fetch(fm.url + "/metrics", { headers: fm.headers() })).text();
      const line = text.split("\n").find((l) => l.startsWith(`${name} `));
      assert.ok(line, `${name} in /metrics`);
      return Number(line.slice(name.length + 1));
    };
    const submit = async () => {
      const res = await fetch(fm.url + "/jobs", {
        method: "POST",
        headers: fm.headers(),
        body: JSON.stringify({ model: "tiny-a", messages: [{ role: "user", content: "x" }] }),
      });
      assert.equal(res.status, 202);
      return (await res.json()).job_id as string;
    };
    const cancel = async (id: string) => {
      const res = await fetch(`${fm.url}/jobs/${id}`, { method: "DELETE", headers: fm.headers() });
      assert.equal(res.status, 200);
      await res.body?.cancel();
    };

    assert.equal(await gauge("foreman_queue_limit"), 7);
    assert.equal(await gauge("foreman_oldest_queued_seconds"), 0);
    const before = Date.now();
    const first = await submit();
    // The age grows while the job waits.
    await waitFor(async () => await gauge("foreman_oldest_queued_seconds") >= 1, {
      timeout: 10_000,
      what: "the oldest job to have waited a second",
    });
    const beforeSecond = Date.now();
    const second = await submit();
    const age = await gauge("foreman_oldest_queued_seconds");
    assert.ok(age >= 1 && age <= (Date.now() - before) / 1000 + 0.1, `age ${age}`);
    // The oldest job leaves the queue: the gauge follows the next one, submitted at least a second
    // after the first, however long these calls take.
    await cancel(first);
    const next = await gauge("foreman_oldest_queued_seconds");
    assert.ok(next <= (Date.now() - beforeSecond) / 1000 + 0.1, `next ${next}, first ${age}`);
    await cancel(second);
    assert.equal(await gauge("foreman_oldest_queued_seconds"), 0);
  } finally {
    await fm.stop();
  }
});

Deno.test("the oldest queued job is the earliest submitted still queued, requeued ones included", () => {
  const now = { t: 1_700_000_000_000 };
  const store = openStore(`${Deno.makeTempDirSync()}/q.db`, { now: () => now.t });
  const add = () => store.insertJob({ kind: "async", endpoint: "chat", model: "m", request: "{}" });
  try {
    assert.equal(store.oldestQueuedAt(), null);
    const a = add();
    now.t += 1000;
    const b = add();
    now.t += 1000;
    add();
    assert.equal(store.oldestQueuedAt(), a.createdAt);
    // Taken by the worker: no longer waiting.
    store.transition("claim", a.id);
    assert.equal(store.oldestQueuedAt(), b.createdAt);
    // Back in the queue after an unreachable target: it has waited since its submission.
    store.transition("requeue", a.id, { error: "unreachable", notBefore: 0, refund: true });
    assert.equal(store.oldestQueuedAt(), a.createdAt);
    store.transition("cancel", a.id, { error: "cancelled" });
    store.transition("fail", b.id, { error: "failed" });
    assert.equal(store.oldestQueuedAt(), b.createdAt + 1000);
  } finally {
    store.close();
  }
});
