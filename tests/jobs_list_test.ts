// deno-lint-ignore-file no-explicit-any -- job JSON is checked field by field below
// GET /jobs stays cheap whatever the jobs hold: a page reads no request, result or artifact bytes
// (checked on a real foreman's memory over a database of large jobs), and its queue positions
// come from a constant number of queries however deep the queue (counted in process).

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { StatementSync } from "node:sqlite";
import { list } from "../src/http/jobs.ts";
import type { HttpDeps } from "../src/http/deps.ts";
import { startForeman } from "../harness/foreman.ts";
import { OllamaSim } from "../sim/mod.ts";
import { report } from "./reliability/support.ts";
import { openStore } from "./support/store.ts";

/** A /proc/<pid>/status figure in MiB: VmRSS now, or VmHWM, the peak so far. */
function memoryMiB(pid: number, field: "VmRSS" | "VmHWM"): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(status);
  if (!kb) throw new Error(`Cannot read ${field} of process ${pid}`);
  return Number(kb[1]) / 1024;
}

/** How many SQLite statements `fn` executes (every Store query goes through StatementSync). */
function countStatements<T>(fn: () => T): { result: T; statements: number } {
  const proto = StatementSync.prototype as any;
  const methods = ["all", "get", "run", "iterate"];
  const real = methods.map((m) => proto[m]);
  let statements = 0;
  methods.forEach((m, i) => {
    proto[m] = function (this: unknown, ...args: unknown[]) {
      statements++;
      return real[i].apply(this, args);
    };
  });
  try {
    return { result: fn(), statements };
  } finally {
    methods.forEach((m, i) => proto[m] = real[i]);
  }
}

Deno.test("listing 20 jobs of 15 MB reads none of their bodies", async () => {
  const sim = await OllamaSim.start({ loadMs: 10, tokenMs: 2 });
  const dir = await Deno.makeTempDir({ prefix: "foreman-list-" });
  await Deno.mkdir(`${dir}/data`);
  // Written before foreman starts, as a day of large async jobs would have left them.
  const store = openStore(`${dir}/data/foreman.db`);
  const request = JSON.stringify({
    model: "tiny-a:latest",
    messages: [{ role: "user", content: "x".repeat(15 * 1024 * 1024) }],
  });
  const result = JSON.stringify({ done: true, message: { content: "y".repeat(2 << 20) } });
  const bytes = new TextEncoder().encode(result);
  const completion = {
    name: "completion",
    contentType: "application/json",
    size: bytes.byteLength,
    sha256: createHash("sha256").update(bytes).digest("hex"),
    body: bytes,
  };
  store.tx(() => {
    for (let i = 0; i < 20; i++) {
      const job = store.insertJob({
        kind: "async",
        endpoint: "chat",
        model: "tiny-a:latest",
        request,
        metadata: JSON.stringify({ n: i }),
      });
      store.transition("claim", job.id);
      store.transition("startWorking", job.id);
      store.transition("complete", job.id, { result, artifacts: [completion] });
    }
  });
  store.close();
  const fm = await startForeman({ ollamaUrl: sim.url, dir });
  try {
    const rssBefore = memoryMiB(fm.pid, "VmRSS");
    const started = performance.now();
    const res = await fetch(`${fm.url}/jobs?limit=20`, { headers: fm.headers() });
    const body = await res.json();
    const ms = performance.now() - started;
    const peak = memoryMiB(fm.pid, "VmHWM");
    assert.equal(res.status, 200);
    assert.equal(body.jobs.length, 20);
    for (const job of body.jobs) {
      assert.equal(job.state, "done");
      assert.equal(job.result, null, "lists carry no result");
      assert.deepEqual(job.artifacts.map((a: any) => [a.name, a.size, a.inline]), [
        ["completion", bytes.byteLength, null],
      ]);
      assert.match(job.artifacts[0].url, new RegExp(`/jobs/${job.job_id}/artifacts/completion$`));
      assert.equal(typeof job.metadata.n, "number");
    }
    const one = await (await fetch(`${fm.url}/jobs/${body.jobs[0].job_id}`, {
      headers: fm.headers(),
    })).json();
    assert.equal(one.result, null, "over the inline limit: GET has the URL only, as before");
    assert.equal(one.artifacts[0].sha256, completion.sha256);
    await report("list of large jobs", {
      jobs: 20,
      request_mib: 15,
      result_mib: 2,
      rss_before_mib: Math.round(rssBefore),
      peak_after_mib: Math.round(peak),
      list_ms: Math.round(ms),
    });
    assert.ok(
      peak - rssBefore < 64,
      `listing raised foreman's peak RSS from ${rssBefore.toFixed(0)} to ${peak.toFixed(0)} MiB`,
    );
  } finally {
    await fm.stop();
    await sim.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a page of 500 queued jobs gets its positions from a constant number of queries", async () => {
  const dir = await Deno.makeTempDir({ prefix: "foreman-list-" });
  const store = openStore(`${dir}/q.db`);
  const models = ["m-a:latest", "m-b:latest", "m-c:latest"];
  const queued: { id: string; model: string }[] = [];
  store.tx(() => {
    for (let i = 0; i < 10_000; i++) {
      const model = models[(i * 7 + (i >> 5)) % 3]!;
      const job = store.insertJob({ kind: "async", endpoint: "chat", model, request: "{}" });
      queued.push({ id: job.id, model });
    }
  });
  // The order the worker takes them in: the resident model's jobs, then each other model's
  // group, groups by their oldest job, each group oldest first.
  const resident = "m-b:latest";
  const groups = models.map((m) => queued.filter((j) => j.model === m))
    .sort((a, b) =>
      Number(b[0]!.model === resident) - Number(a[0]!.model === resident) ||
      (a[0]!.id < b[0]!.id ? -1 : 1)
    );
  const expected = new Map(groups.flat().map((j, i) => [j.id, i + 1]));
  const deps = {
    store,
    residency: { current: resident },
    views: { publicUrl: "http://127.0.0.1:1", inlineLimit: 262_144 },
  } as unknown as HttpDeps;
  try {
    const started = performance.now();
    const { result, statements } = countStatements(() =>
      list(new URL("http://x/jobs?state=queued&limit=500"), deps)
    );
    const blockedMs = performance.now() - started;
    const page = (await result.json()).jobs as any[];
    assert.equal(page.length, 500);
    for (const job of page) assert.equal(job.position, expected.get(job.job_id), job.job_id);
    await report("queue positions for a page", {
      queued: 10_000,
      page: 500,
      statements,
      blocked_ms: Math.round(blockedMs),
    });
    assert.ok(statements <= 6, `${statements} statements for one page`);
  } finally {
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
