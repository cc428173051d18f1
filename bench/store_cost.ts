// What a sync job costs in the store alone, statement by statement: the fold's transaction (insert,
// claim, start, three events) and the completion's (complete, one event), on a store opened as the
// daemon opens it, with the worker's checkpoint every 32 commits. No HTTP, no target: the part of
// foreman's per-job CPU that SQLite takes, for docs/benchmarks.md.
//
//   deno run -A bench/store_cost.ts [--jobs 5000]

import { parseArgs } from "node:util";
import { StatementSync } from "node:sqlite";
import { Store } from "../src/queue/store.ts";
import { eventBody } from "../src/views.ts";

const { values } = parseArgs({ args: Deno.args, options: { jobs: { type: "string" } } });
const jobs = Number(values.jobs ?? 5000);
const WARM_UP = 500;

// Each statement's time, by its SQL, measured around node:sqlite's calls.
const spent = new Map<string, { calls: number; ms: number }>();
let counting = false;
const proto = StatementSync.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
for (const method of ["run", "get", "all"]) {
  const original = proto[method]!;
  proto[method] = function (this: StatementSync, ...args: unknown[]) {
    const t0 = performance.now();
    try {
      return original.apply(this, args);
    } finally {
      if (counting) {
        const sql = this.sourceSQL.replace(/\s+/g, " ").trim();
        const key = sql.length > 72 ? `${sql.slice(0, 72)}…` : sql;
        const s = spent.get(key) ?? { calls: 0, ms: 0 };
        s.calls++;
        s.ms += performance.now() - t0;
        spent.set(key, s);
      }
    }
  };
}

const dir = await Deno.makeTempDir({ prefix: "foreman-store-cost-" });
const views = { publicUrl: "http://127.0.0.1:8080", inlineLimit: 262144 };
const store = new Store(`${dir}/foreman.db`, {
  renderEvent: (job, event) => eventBody(job, event, views),
  checkpoints: "owner",
});
const request = JSON.stringify({
  model: "a",
  messages: [{ role: "user", content: "hi" }],
  stream: false,
  keep_alive: -1,
  options: { num_predict: 1 },
});
const result = JSON.stringify({
  model: "a",
  created_at: new Date().toISOString(),
  message: { role: "assistant", content: "x" },
  done: true,
  done_reason: "stop",
  total_duration: 1,
  eval_count: 1,
});

let fold = 0;
let complete = 0;
for (let i = 0; i < jobs + WARM_UP; i++) {
  counting = i >= WARM_UP;
  const t0 = performance.now();
  const working = store.txFor([{ kind: "sync" }], () => {
    const queued = store.insertJob({ kind: "sync", endpoint: "chat", model: "a:latest", request });
    store.transition("claim", queued);
    return store.transition("startWorking", queued);
  });
  const t1 = performance.now();
  store.transition("complete", working, { result });
  const t2 = performance.now();
  if (i % 32 === 0) store.checkpoint("PASSIVE");
  if (counting) {
    fold += t1 - t0;
    complete += t2 - t1;
  }
}
counting = false;
store.close();
await Deno.remove(dir, { recursive: true });

const us = (ms: number) => (1000 * ms / jobs).toFixed(1);
console.log(
  `${jobs} sync jobs: per job, the fold's transaction ${us(fold)} µs, the completion's ${
    us(complete)
  } µs, together ${us(fold + complete)} µs\n`,
);
console.log("| statement | calls per job | µs per call | µs per job |\n|---|--:|--:|--:|");
for (const [sql, s] of [...spent].sort((a, b) => b[1].ms - a[1].ms)) {
  const perCall = (1000 * s.ms / s.calls).toFixed(1);
  console.log(`| \`${sql}\` | ${(s.calls / jobs).toFixed(2)} | ${perCall} | ${us(s.ms)} |`);
}
