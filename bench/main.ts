// `deno task bench [--quick] [--only proxy,jobs,swaps,memory,webhooks,watchers]`: measures foreman against
// the Ollama simulator on 127.0.0.1 and writes the figures (JSON and Markdown) to bench/results/
// and the latency plot to docs/. It measures only: a missed target is reported, never a failure.

import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { latencySvg, type Panel } from "./plot.ts";
import { loadAverage, machine } from "./processes.ts";
import { markdown, type Results } from "./report.ts";
import { jobsBench, type JobsSizes } from "./scenarios/jobs.ts";
import { memoryBench, type MemorySizes } from "./scenarios/memory.ts";
import { proxyBench, type ProxySizes } from "./scenarios/proxy.ts";
import { swapBench, type SwapSizes } from "./scenarios/swaps.ts";
import { watcherBench, type WatcherSizes } from "./scenarios/watchers.ts";
import { webhookBench, type WebhookSizes } from "./scenarios/webhooks.ts";

interface Sizes {
  proxy: ProxySizes;
  jobs: JobsSizes;
  swaps: SwapSizes;
  memory: MemorySizes;
  webhooks: WebhookSizes;
  watchers: WatcherSizes;
}

const SIZES: Record<"quick" | "full", Sizes> = {
  quick: {
    proxy: {
      rounds: 3,
      syncC1: 200,
      syncC16: 600,
      syncC32: 600,
      ttfc: 150,
      embedC32: 600,
      streamRounds: 1,
      longChunks: 1000,
      ceilingChunks: 10_000,
    },
    jobs: { rounds: 1, c32: 3000, c1: 300 },
    swaps: { jobs: 300, loadMs: 20, orders: ["round-robin"] },
    memory: { queued: 20_000, startups: 3 },
    webhooks: { latencyJobs: 100, burstJobs: 500 },
    watchers: { idle: 1000, quietMs: 20_000, delayJobs: 100, fanOut: 100 },
  },
  full: {
    proxy: {
      rounds: 7,
      syncC1: 1000,
      syncC16: 2000,
      syncC32: 2000,
      ttfc: 500,
      embedC32: 2000,
      streamRounds: 3,
      longChunks: 3000,
      ceilingChunks: 50_000,
    },
    jobs: { rounds: 3, c32: 10_000, c1: 1000 },
    swaps: { jobs: 300, loadMs: 20, orders: ["round-robin", "random"] },
    memory: { queued: 100_000, startups: 5 },
    webhooks: { latencyJobs: 300, burstJobs: 2000 },
    watchers: { idle: 1000, quietMs: 60_000, delayJobs: 300, fanOut: 1000 },
  },
};

const PARTS = ["proxy", "jobs", "swaps", "memory", "webhooks", "watchers"] as const;
type Part = typeof PARTS[number];

const repo = (p: string) => fileURLToPath(new URL(`../${p}`, import.meta.url));

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string" },
      out: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(
      "usage: deno task bench [--quick] [--only proxy,jobs,swaps,memory,webhooks,watchers] " +
        "[--out DIR]",
    );
    return 0;
  }
  const mode = values.quick ? "quick" : "full";
  const only = (values.only?.split(",").map((s) => s.trim()) ?? [...PARTS]) as Part[];
  for (const p of only) {
    if (!PARTS.includes(p)) {
      console.error(`bench: unknown part '${p}'; choose from ${PARTS.join(", ")}`);
      return 2;
    }
  }
  const sizes = SIZES[mode];
  const outDir = values.out ?? repo("bench/results");
  await Deno.mkdir(outDir, { recursive: true });
  const started = Date.now();
  const results: Results = {
    mode,
    command: `deno task bench${values.quick ? " --quick" : ""}${
      values.only ? ` --only ${values.only}` : ""
    }`,
    startedAt: new Date(started).toISOString(),
    finishedAt: "",
    machine: machine(),
    load: {},
  };
  const note = (part: string) => (msg: string) =>
    console.error(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${part}: ${msg}`);
  console.error(`bench: ${mode} mode, parts ${only.join(", ")}, load ${loadAverage()}`);

  const run = async <T>(part: Part, fn: () => Promise<T>): Promise<T | undefined> => {
    if (!only.includes(part)) return undefined;
    const before = loadAverage();
    const out = await fn();
    results.load[part] = { before, after: loadAverage() };
    return out;
  };
  results.proxy = await run("proxy", () => proxyBench(sizes.proxy, note("proxy")));
  results.jobs = await run("jobs", () => jobsBench(sizes.jobs, note("jobs")));
  results.swaps = await run("swaps", () => swapBench(sizes.swaps, note("swaps")));
  results.memory = await run("memory", () => memoryBench(sizes.memory, note("memory")));
  results.webhooks = await run("webhooks", () => webhookBench(sizes.webhooks, note("webhooks")));
  results.watchers = await run("watchers", () => watcherBench(sizes.watchers, note("watchers")));
  results.finishedAt = new Date().toISOString();

  const md = markdown(results);
  const stem = only.length === PARTS.length ? mode : `${mode}-${only.join("-")}`;
  await Deno.writeTextFile(`${outDir}/${stem}.md`, md);
  await Deno.writeTextFile(
    `${outDir}/${stem}.json`,
    JSON.stringify(withoutSamples(results), null, 1),
  );
  const svg = plot(results);
  if (svg) {
    // The published plot comes from a full run of every part; others go beside their results.
    const svgPath = stem === "full" && !values.out
      ? repo("docs/benchmarks-latency.svg")
      : `${outDir}/${stem}-latency.svg`;
    await Deno.writeTextFile(svgPath, svg);
    console.error(`bench: plot written to ${svgPath}`);
  }
  console.log(md);
  console.error(`bench: results in ${outDir}/${stem}.{md,json}`);
  return 0;
}

const DIRECT = "#1f77b4";
const FOREMAN = "#e6550d";

function plot(r: Results): string | undefined {
  const panels: Panel[] = [];
  const pair = (title: string, c?: { samples: { direct: number[]; foreman: number[] } }) => {
    if (!c) return;
    panels.push({
      title,
      series: [
        { label: "direct", color: DIRECT, samples: c.samples.direct },
        { label: "foreman", color: FOREMAN, samples: c.samples.foreman },
      ],
    });
  };
  pair("sync /api/chat, concurrency 1", r.proxy?.syncC1);
  pair("sync /v1/chat/completions, concurrency 1", r.proxy?.v1SyncC1);
  pair("sync /api/chat, concurrency 16", r.proxy?.syncC16);
  pair("sync /api/chat, concurrency 32", r.proxy?.syncC32);
  pair("streaming /api/chat: time to first chunk", r.proxy?.ttfc);
  pair("/api/embed, concurrency 32", r.proxy?.embedC32);
  if (r.jobs) {
    panels.push({
      title: "POST /jobs submit latency, concurrency 32",
      series: [{ label: "foreman", color: FOREMAN, samples: r.jobs.samples }],
    });
  }
  if (r.webhooks) {
    panels.push({
      title: "webhook: state change to receiver",
      series: [{ label: "foreman", color: FOREMAN, samples: r.webhooks.samples }],
    });
  }
  if (panels.length === 0) return undefined;
  return latencySvg(
    panels,
    `foreman ${r.mode} benchmark, ${r.startedAt.slice(0, 10)}: latency by percentile ` +
      `(x axis stretches the tail: p50, p90, p99, p99.9), all samples of all rounds`,
  );
}

/** The JSON keeps every figure but not the raw samples (those are what the plot shows). */
function withoutSamples(r: Results): unknown {
  return JSON.parse(JSON.stringify(r, (k, v) => (k === "samples" ? undefined : v)));
}

if (import.meta.main) Deno.exit(await main(Deno.args));
