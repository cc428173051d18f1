// Before/after measurement for one change: foremen built from several source trees (a worktree of
// the commit before the change, this tree), all in front of one simulator, run in the same rotated
// rounds as direct, so drift in machine load falls on every system alike. Each foreman writes its
// log to a file (not a pipe read by this process). Prints a Markdown table of medians over rounds
// (min–max), with the daemon's CPU per request (all threads, and the main thread alone).
//
//   git worktree add /tmp/foreman-before HEAD~1
//   deno run -A bench/ab.ts --tree before=/tmp/foreman-before --tree after=. \
//     [--rounds 8] [--parts c1,v1,c16,ttfc,ceiling] [--peers bare,serial] \
//     [--env after:FOREMAN_LOG_LEVEL=warn] [--v8 --trace-gc]

import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { freePort } from "../harness/foreman.ts";
import { compareSystems } from "./compare.ts";
import { closedLoop, type LoopResult, postJson, readStream } from "./load.ts";
import {
  benchServeFlags,
  loadAverage,
  startBareProxy,
  startSerialProxy,
  startSimProcess,
  stopChild,
} from "./processes.ts";
import { median } from "./stats.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    tree: { type: "string", multiple: true },
    env: { type: "string", multiple: true },
    rounds: { type: "string", default: "8" },
    parts: { type: "string", default: "c1,v1,c16,ttfc,ceiling" },
    peers: { type: "string", default: "" },
    v8: { type: "string" },
    n1: { type: "string", default: "300" },
    n16: { type: "string", default: "800" },
    chunks: { type: "string", default: "20000" },
    // "pipe": the daemons' output read by this process, as the test harness (or journald) does.
    log: { type: "string", default: "file" },
  },
});

const trees = (values.tree ?? [`after=${Deno.cwd()}`]).map((t) => {
  const [name, path] = t.includes("=") ? t.split(/=(.*)/s, 2) as [string, string] : [t, t];
  return { name, path: resolve(path) };
});
const envOf = (name: string): Record<string, string> => {
  const out: Record<string, string> = {};
  for (const e of values.env ?? []) {
    const [who, kv] = e.split(/:(.*)/s, 2) as [string, string];
    if (who !== name && who !== "*") continue;
    const [k, v] = kv.split(/=(.*)/s, 2) as [string, string];
    out[k] = v;
  }
  return out;
};
const rounds = Number(values.rounds);
const parts = values.parts!.split(",");
const peers = values.peers!.split(",").filter(Boolean);
const TOKEN = "ab-token-0123456789abcdef";

interface Daemon {
  name: string;
  url: string;
  pid: number;
  dir: string;
  stop(): Promise<void>;
}

/** A foreman from `tree`, started with that tree's own launch plan, its output going to files. */
async function startTree(
  tree: { name: string; path: string },
  target: string,
): Promise<Daemon> {
  const { daemonArgs } = await import(`${tree.path}/src/launcher.ts`);
  const dir = await Deno.makeTempDir({ prefix: `foreman-ab-${tree.name}-` });
  await Deno.writeTextFile(`${dir}/foreman.toml`, "");
  const port = freePort();
  const env = { FOREMAN_TOKEN: TOKEN, ...envOf(tree.name) };
  const args: string[] = daemonArgs(
    benchServeFlags(dir, port, target),
    (name: string) => env[name as keyof typeof env],
  );
  if (values.v8) args.splice(1, 0, `--v8-flags=${values.v8}`);
  const q = (x: string) => `'${x.replaceAll("'", `'\\''`)}'`;
  // exec: the shell becomes deno, so the pid is the daemon's (CPU is read from /proc).
  const pipe = values.log === "pipe";
  const to = pipe ? "" : ` >${dir}/out 2>${dir}/err`;
  const child = new Deno.Command("sh", {
    args: ["-c", `exec ${[Deno.execPath(), ...args].map(q).join(" ")}${to}`],
    cwd: dir,
    env: { ...env, PATH: Deno.env.get("PATH") ?? "", HOME: Deno.env.get("HOME") ?? "" },
    clearEnv: true,
    stdin: "null",
    stdout: pipe ? "piped" : "inherit",
    stderr: pipe ? "piped" : "inherit",
  }).spawn();
  if (pipe) {
    // Read and kept, as the harness keeps a daemon's output.
    let kept = "";
    for (const s of [child.stdout, child.stderr]) {
      (async () => {
        for await (const chunk of s.pipeThrough(new TextDecoderStream())) kept += chunk;
      })().catch(() => {});
    }
    void kept;
  }
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  while (true) {
    try {
      const res = await fetch(`${url}/healthz`);
      await res.body?.cancel();
      if (res.ok) break;
    } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`${tree.name} did not start: see ${dir}/err`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    name: tree.name,
    url,
    pid: child.pid,
    dir,
    stop: async () => {
      await stopChild(child, "SIGTERM", 10_000);
    },
  };
}

/** CPU time of a process so far, ns: all its threads, and its main thread. */
function cpu(pid: number): { all: number; main: number } {
  let all = 0;
  let main = 0;
  for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const ns = Number(
        Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/schedstat`).split(" ")[0],
      );
      all += ns;
      if (t.name === String(pid)) main = ns;
    } catch { /* the thread ended */ }
  }
  return { all, main };
}

const rows: Record<string, Record<string, number[]>> = {};
const put = (s: string, k: string, v: number) => {
  ((rows[s] ??= {})[k] ??= []).push(v);
};
const body = (n: number, stream: boolean) =>
  JSON.stringify({
    model: "a",
    messages: [{ role: "user", content: "hi" }],
    stream,
    keep_alive: -1,
    options: { num_predict: n },
  });
const v1Body = JSON.stringify({
  model: "a",
  messages: [{ role: "user", content: "hi" }],
  stream: false,
  max_tokens: 1,
});

async function fleet(tokenMs: number) {
  const sim = await startSimProcess({ loadMs: 0, tokenMs, models: ["a", "b"] });
  const daemons: Daemon[] = [];
  for (const t of trees) daemons.push(await startTree(t, sim.url));
  const others: Record<string, { url: string; pid: number; stop(): Promise<void> }> = {};
  if (peers.includes("bare")) others.bare = await startBareProxy(sim.url);
  // The serial proxy reads each answer whole before sending it: no stream to time for a ceiling.
  if (peers.includes("serial") && tokenMs > 0) others.serial = await startSerialProxy(sim.url);
  const byName = new Map<string, { url: string; pid: number }>(
    [["direct", sim], ...daemons.map((d) => [d.name, d] as const), ...Object.entries(others)],
  );
  const names = ["direct", ...daemons.map((d) => d.name), ...Object.keys(others)];
  const isForeman = (s: string) => daemons.some((d) => d.name === s);
  return {
    names,
    url: (s: string) => byName.get(s)!.url,
    auth: (s: string): Record<string, string> =>
      isForeman(s) ? { authorization: `Bearer ${TOKEN}` } : {},
    /** Runs a batch and records the measured process's CPU per operation. */
    measured: async (s: string, tag: string, fn: () => Promise<LoopResult>) => {
      const pid = byName.get(s)!.pid;
      const c0 = cpu(pid);
      const r = await fn();
      const c1 = cpu(pid);
      const n = r.latencies.length + r.errors;
      const d = daemons.find((d) => d.name === s);
      if (d) (gcRuns[`${s} (${tokenMs} ms/token)`] ??= { dir: d.dir, requests: 0 }).requests += n;
      put(s, `${tag}.cpu`, (c1.all - c0.all) / 1e6 / n);
      put(s, `${tag}.main`, (c1.main - c0.main) / 1e6 / n);
      if (r.errors) console.error(`${s} ${tag}: ${r.errors} errors, first: ${r.firstError}`);
      return r;
    },
    stop: async () => {
      for (const d of daemons) await d.stop();
      for (const o of Object.values(others)) await o.stop();
      await sim.stop();
    },
    daemons,
  };
}

/** Requests each daemon served (timed and warm-up), for the GC figures per request. */
const gcRuns: Record<string, { dir: string; requests: number }> = {};
const load0 = loadAverage();
const started = Date.now();
const logs: string[] = [];
{
  const f = await fleet(1);
  const sync =
    (tag: string, c: number, n: number, path = "/api/chat", payload = body(1, false)) =>
    (s: string) =>
      f.measured(s, tag, () =>
        closedLoop(async (_i, signal) => {
          await (await postJson(`${f.url(s)}${path}`, payload, f.auth(s), signal)).arrayBuffer();
        }, { concurrency: c, count: n, warmup: Math.max(20, 2 * c) }));
  const record = (tag: string, r: Awaited<ReturnType<typeof compareSystems>>) => {
    for (const s of f.names) {
      for (const x of r[s]!.rounds) {
        put(s, `${tag}.p50`, x.foreman.p50 - x.direct.p50);
        put(s, `${tag}.p99`, x.foreman.p99 - x.direct.p99);
        put(s, `${tag}.x`, x.foreman.rate / x.direct.rate);
      }
    }
  };
  if (parts.includes("c1")) {
    record("c1", await compareSystems(rounds, f.names, sync("c1", 1, Number(values.n1))));
  }
  if (parts.includes("v1")) {
    const v1 = sync("v1", 1, Number(values.n1), "/v1/chat/completions", v1Body);
    record("v1", await compareSystems(rounds, f.names, v1));
  }
  if (parts.includes("c16")) {
    const n = Number(values.n16);
    record("c16", await compareSystems(Math.ceil(rounds / 2), f.names, sync("c16", 16, n)));
  }
  if (parts.includes("ttfc")) {
    const short = body(1, true);
    const r = await compareSystems(
      rounds,
      f.names,
      (s) =>
        f.measured(s, "ttfc", () =>
          closedLoop(async (_i, signal) => {
            const t0 = performance.now();
            const res = await postJson(`${f.url(s)}/api/chat`, short, f.auth(s), signal);
            return (await readStream(res, t0)).firstMs;
          }, { concurrency: 1, count: Number(values.n1), warmup: 20 })),
    );
    for (const s of f.names) {
      for (const x of r[s]!.rounds) put(s, "ttfc.p50", x.foreman.p50 - x.direct.p50);
    }
  }
  await f.stop();
  logs.push(...f.daemons.map((d) => `${d.name}: ${d.dir}`));
}
if (parts.includes("ceiling")) {
  const f = await fleet(0);
  const chunks = Number(values.chunks);
  const long = body(chunks, true);
  for (const s of f.names) {
    const res = await postJson(
      `${f.url(s)}/api/chat`,
      long,
      f.auth(s),
      AbortSignal.timeout(60_000),
    );
    await readStream(res, performance.now());
  }
  for (let r = 0; r < rounds; r++) {
    const got: Record<string, number> = {};
    for (const s of f.names.map((_, i) => f.names[(i + r) % f.names.length]!)) {
      const t0 = performance.now();
      const res = await postJson(
        `${f.url(s)}/api/chat`,
        long,
        f.auth(s),
        AbortSignal.timeout(60_000),
      );
      const st = await readStream(res, t0);
      if (st.lines !== chunks + 1) {
        throw new Error(`${s}: ${st.lines} lines, expected ${chunks + 1}`);
      }
      got[s] = (st.lines - 1) / ((st.lastLineAt - st.firstLineAt) / 1000);
    }
    for (const s of f.names) put(s, "ceiling.x", got[s]! / got.direct!);
  }
  await f.stop();
  logs.push(...f.daemons.map((d) => `${d.name} (ceiling): ${d.dir}`));
}

const cols: [string, string][] = [
  ["c1.p50", "c=1 added p50"],
  ["c1.p99", "c=1 added p99"],
  ["c1.x", "c=1 ×"],
  ["c1.cpu", "CPU ms/req"],
  ["c1.main", "main ms/req"],
  ["v1.p50", "/v1 added p50"],
  ["v1.p99", "/v1 added p99"],
  ["c16.x", "c=16 ×"],
  ["c16.cpu", "c=16 CPU ms/req"],
  ["ttfc.p50", "TTFC added p50"],
  ["ceiling.x", "ceiling ×"],
].filter(([k]) => parts.includes(k!.split(".")[0]!)) as [string, string][];
const fmt = (v: number[] | undefined) =>
  v ? `${median(v).toFixed(2)} (${Math.min(...v).toFixed(2)}–${Math.max(...v).toFixed(2)})` : "–";
console.log(
  `rounds ${rounds}, load ${load0} → ${loadAverage()}, ${
    ((Date.now() - started) / 1000).toFixed(0)
  } s; median over rounds (min–max); ms, or × direct\n`,
);
console.log(`| system | ${cols.map((c) => c[1]).join(" | ")} |`);
console.log(`|---|${cols.map(() => "--:").join("|")}|`);
for (const s of Object.keys(rows).filter((s) => s !== "direct")) {
  console.log(`| ${s} | ${cols.map(([k]) => fmt(rows[s]![k])).join(" | ")} |`);
}
console.log(
  `| direct | ${
    cols.map(([k]) => k.endsWith("cpu") || k.endsWith("main") ? fmt(rows.direct?.[k]) : "").join(
      " | ",
    )
  } |`,
);
if (values.v8?.includes("--trace-gc")) {
  // What V8 printed per daemon: collections and their pauses over the whole run, per 1000 requests.
  console.log("\n| system | requests | scavenges /1000 | mark-compacts /1000 | pause ms /1000 |");
  console.log("|---|--:|--:|--:|--:|");
  for (const [name, { dir, requests }] of Object.entries(gcRuns)) {
    const out = Deno.readTextFileSync(`${dir}/out`).split("\n");
    const pause = (l: string) =>
      Number(/MB, (?:pooled: [\d.]+ MB, )?([\d.]+) \//.exec(l)?.[1] ?? 0);
    const scav = out.filter((l) => l.includes("Scavenge"));
    const mark = out.filter((l) => l.includes("Mark-Compact"));
    const per = (n: number) => (n * 1000 / requests).toFixed(2);
    const ms = [...scav, ...mark].reduce((a, l) => a + pause(l), 0);
    console.log(
      `| ${name} | ${requests} | ${per(scav.length)} | ${per(mark.length)} | ${per(ms)} |`,
    );
  }
}
console.error(`logs: ${logs.join(", ")}`);
