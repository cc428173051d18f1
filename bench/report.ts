// Turns benchmark results into the Markdown published in docs/benchmarks.md: the results table and
// each target with how far the measured figure is from it. Measuring never fails a run; a missed
// target is a row that says so.

import type { Comparison } from "./compare.ts";
import type { Machine } from "./processes.ts";
import type { JobsResults } from "./scenarios/jobs.ts";
import type { MemoryResults } from "./scenarios/memory.ts";
import type { ProxyResults, System } from "./scenarios/proxy.ts";
import type { SwapResult } from "./scenarios/swaps.ts";
import type { WatcherResults } from "./scenarios/watchers.ts";
import type { WebhookResults } from "./scenarios/webhooks.ts";

export interface Results {
  mode: "quick" | "full";
  command: string;
  startedAt: string;
  finishedAt: string;
  machine: Machine;
  /** 1-minute load average before and after each scenario. */
  load: Record<string, { before: number; after: number }>;
  proxy?: ProxyResults;
  jobs?: JobsResults;
  swaps?: SwapResult[];
  memory?: MemoryResults;
  webhooks?: WebhookResults;
  watchers?: WatcherResults;
}

const f = (v: number, digits = 2) => Number.isFinite(v) ? v.toFixed(digits) : "–";
const n = (v: number) => Number.isFinite(v) ? Math.round(v).toLocaleString("en-US") : "–";
const signed = (v: number, digits = 2) => (v >= 0 ? "+" : "") + f(v, digits);

function latencyRows(name: string, c: Comparison): string[] {
  return [
    `| ${name}: p50 latency (ms) | ${f(c.direct.p50)} | ${f(c.foreman.p50)} | ${
      signed(c.addedP50)
    } |`,
    `| ${name}: p99 latency (ms) | ${f(c.direct.p99)} | ${f(c.foreman.p99)} | ${
      signed(c.addedP99)
    } |`,
    `| ${name}: requests/s | ${n(c.direct.rate)} | ${n(c.foreman.rate)} | ×${f(c.rateRatio)} |`,
  ];
}

export function resultsTable(r: Results): string {
  const rows = [
    "| measurement | direct | foreman | foreman − direct (or ×) |",
    "|---|---:|---:|---:|",
  ];
  const p = r.proxy;
  if (p) {
    rows.push(...latencyRows("sync chat, concurrency 1", p.syncC1));
    if (p.v1SyncC1) rows.push(...latencyRows("sync /v1 chat, concurrency 1", p.v1SyncC1));
    if (p.syncC16) rows.push(...latencyRows("sync chat, concurrency 16", p.syncC16));
    rows.push(...latencyRows("sync chat, concurrency 32", p.syncC32));
    rows.push(
      `| streaming chat: time to first chunk p50 (ms) | ${f(p.ttfc.direct.p50)} | ${
        f(p.ttfc.foreman.p50)
      } | ${signed(p.ttfc.addedP50)} |`,
      `| streaming chat: time to first chunk p99 (ms) | ${f(p.ttfc.direct.p99)} | ${
        f(p.ttfc.foreman.p99)
      } | ${signed(p.ttfc.addedP99)} |`,
      `| long stream (${p.longStream.chunks} chunks, 1 ms/token): chunks/s | ${
        n(p.longStream.direct)
      } | ${n(p.longStream.foreman)} | ×${f(p.longStream.ratio)} |`,
      `| relay ceiling (${p.ceilingStream.chunks} chunks, unthrottled): chunks/s | ${
        n(p.ceilingStream.direct)
      } | ${n(p.ceilingStream.foreman)} | ×${f(p.ceilingStream.ratio)} |`,
    );
    rows.push(...latencyRows("/api/embed, concurrency 32", p.embedC32));
    rows.push(
      `| floor: bare Deno proxy, sync chat c=1 p50 / p99 (ms) | ${f(p.bareSyncC1.direct.p50)} / ${
        f(p.bareSyncC1.direct.p99)
      } | ${f(p.bareSyncC1.foreman.p50)} / ${f(p.bareSyncC1.foreman.p99)} (bare proxy) | ${
        signed(p.bareSyncC1.addedP50)
      } / ${signed(p.bareSyncC1.addedP99)} |`,
      `| floor: bare Deno proxy, time to first chunk p50 (ms) | ${f(p.bareTtfc.direct.p50)} | ${
        f(p.bareTtfc.foreman.p50)
      } (bare proxy) | ${signed(p.bareTtfc.addedP50)} |`,
    );
  }
  const j = r.jobs;
  if (j) {
    rows.push(
      `| POST /jobs, concurrency 32: jobs/s durably accepted | | ${n(j.c32.rate)} | |`,
      `| POST /jobs, concurrency 32: p50 / p99 submit latency (ms) | | ${f(j.c32.p50)} / ${
        f(j.c32.p99)
      } | |`,
      `| POST /jobs, concurrency 1: jobs/s | | ${n(j.c1.rate)} | |`,
      `| POST /jobs, concurrency 1: p50 / p99 submit latency (ms) | | ${f(j.c1.p50)} / ${
        f(j.c1.p99)
      } | |`,
    );
  }
  for (const s of r.swaps ?? []) {
    rows.push(
      `| ${s.order} backlog, ${s.jobs} jobs × ${s.models} models: swaps (FIFO → drain-by-model) | ${s.fifo.swaps} | ${s.drainByModel.swaps} | ${
        s.drainByModel.swaps - s.fifo.swaps
      } |`,
      `| ${s.order} backlog: makespan at ${s.loadMs} ms per load (ms) | ${n(s.fifo.makespanMs)} | ${
        n(s.drainByModel.makespanMs)
      } | ×${f(s.drainByModel.makespanMs / s.fifo.makespanMs)} |`,
    );
  }
  const m = r.memory;
  if (m) {
    rows.push(
      `| POST /jobs while filling the queue to ${n(m.queued)}: jobs/s, p99 (ms) | | ${
        n(m.fillRate)
      }, ${f(m.fillP99)} | |`,
      `| RSS idle (MiB) | | ${f(m.idleRssMiB, 1)} | |`,
      `| RSS with ${n(m.queued)} queued jobs, just submitted / after 5 s / peak (MiB) | | ${
        f(m.queuedRssMiB, 1)
      } / ${f(m.queuedSettledRssMiB, 1)} / ${f(m.queuedPeakMiB, 1)} | |`,
      `| RSS of a fresh daemon on that database (MiB) | | ${f(m.restartedQueuedRssMiB, 1)} | |`,
      `| start-up to healthy /healthz, empty database (ms) | | ${f(m.startupEmptyMs, 0)} | |`,
      `| start-up to healthy /healthz, ${n(m.queued)} queued jobs (ms) | | ${
        f(m.startupQueuedMs, 0)
      } | |`,
    );
  }
  const w = r.webhooks;
  if (w) {
    rows.push(
      `| webhook: state change → receiver p50 / p99 (ms, ${w.latency.events} events) | ${
        f(w.floor.p50)
      } / ${f(w.floor.p99)} | ${f(w.latency.p50)} / ${f(w.latency.p99)} | |`,
      `| webhook: deliveries/s (backlog of ${w.burst.events} due events) | ${n(w.floor.rate)} | ${
        n(w.burst.perSecond)
      } | ×${f(w.burst.perSecond / w.floor.rate)} |`,
    );
  }
  if (r.watchers) rows.push(...watcherRows(r.watchers));
  return rows.join("\n");
}

/** Watching jobs: idle event streams' cost, and state change to watcher. */
function watcherRows(w: WatcherResults): string[] {
  const i = w.idle;
  return [
    `| ${n(i.watchers)} idle event streams: RSS before / with them (MiB) | | ${
      f(i.rssBeforeMiB, 1)
    } / ${f(i.rssAfterMiB, 1)} | +${
      f((i.rssAfterMiB - i.rssBeforeMiB) * 1024 / i.watchers, 1)
    } KiB each |`,
    `| ${n(i.watchers)} idle event streams: CPU over ${f(i.quietMs / 1000, 0)} s quiet (ms) | | ${
      f(i.cpuBeforeMs, 0)
    } / ${f(i.cpuAfterMs, 0)} | ${f(i.cpuAfterMs / i.quietMs * 100, 2)} % of a core |`,
    `| watch: state change → watcher p50 / p99 (ms, ${w.delay.events} events) | | ${
      f(w.delay.p50)
    } / ${f(w.delay.p99)} | |`,
    `| watch: state change → each of ${n(w.fanOut.watchers)} watchers p50 / p99 (ms) | | ${
      f(w.fanOut.p50)
    } / ${f(w.fanOut.p99)} | |`,
  ];
}

interface Target {
  name: string;
  target: string;
  measured: string;
  met: boolean | undefined;
  distance: string;
}

export function targets(r: Results): Target[] {
  const out: Target[] = [];
  const ge = (name: string, ratio: number | undefined, least: number) => {
    if (ratio === undefined) return;
    out.push({
      name,
      target: `≥ ${least}× direct`,
      measured: `×${f(ratio)}`,
      met: ratio >= least,
      distance: ratio >= least ? `${f(ratio - least)} above` : `${f(least - ratio)} short`,
    });
  };
  const le = (name: string, v: number | undefined, limit: number, unit: string) => {
    if (v === undefined) return;
    out.push({
      name,
      target: `< ${limit} ${unit}`,
      measured: `${f(v)} ${unit}`,
      met: v < limit,
      distance: v < limit
        ? `${f(limit - v)} ${unit} under`
        : `${f(v - limit)} ${unit} over (×${f(v / limit)})`,
    });
  };
  // Issue 13's targets.
  le("sync chat, concurrency 1: added p50", r.proxy?.syncC1.addedP50, 0.8, "ms");
  le("sync chat, concurrency 1: added p99", r.proxy?.syncC1.addedP99, 2, "ms");
  le("streaming: time to first chunk added (p50)", r.proxy?.ttfc.addedP50, 0.6, "ms");
  ge("sync chat, concurrency 16: requests/s", r.proxy?.syncC16?.rateRatio, 0.8);
  const floor = r.proxy?.peers?.syncC16.serial?.rateRatio;
  if (floor !== undefined) {
    out.push({
      name: "(beside it: a strictly serial bare proxy, the ceiling of a one-at-a-time worker)",
      target: "–",
      measured: `×${f(floor)}`,
      met: undefined,
      distance: r.proxy?.syncC16
        ? `foreman at ${f((r.proxy.syncC16.rateRatio / floor) * 100, 0)} % of it`
        : "",
    });
  }
  ge("relay ceiling (unthrottled stream): chunks/s", r.proxy?.ceilingStream.ratio, 0.8);
  if (r.jobs) {
    const v = r.jobs.c32.rate;
    out.push({
      name: "durable POST /jobs submissions (concurrency 32)",
      target: "≥ 5,000 jobs/s on 2 cores",
      measured: `${n(v)} jobs/s`,
      met: v >= 5000,
      distance: v >= 5000
        ? `${n(v - 5000)} jobs/s above`
        : `${n(5000 - v)} jobs/s short (${f((v / 5000) * 100, 0)} % of target)`,
    });
  }
  for (const s of r.swaps ?? []) {
    const want = s.models - 1;
    out.push({
      name: `drain-by-model swaps, ${s.order} backlog`,
      target: `= ${want} (models − 1)`,
      measured: String(s.drainByModel.swaps),
      met: s.drainByModel.swaps === want,
      distance: s.drainByModel.swaps === want
        ? "exact"
        : `${s.drainByModel.swaps - want} more than models − 1`,
    });
  }
  le("RSS idle", r.memory?.idleRssMiB, 80, "MiB");
  if (r.memory) {
    le(
      `RSS with ${n(r.memory.queued)} queued jobs (largest reading)`,
      Math.max(r.memory.queuedRssMiB, r.memory.queuedSettledRssMiB),
      200,
      "MiB",
    );
  }
  return out;
}

export function targetsTable(r: Results): string {
  const rows = ["| target | wanted | measured | met | distance |", "|---|---|---:|:---:|---|"];
  for (const t of targets(r)) {
    rows.push(
      `| ${t.name} | ${t.target} | ${t.measured} | ${
        t.met === undefined ? "–" : t.met ? "yes" : "no"
      } | ${t.distance} |`,
    );
  }
  return rows.join("\n");
}

const SYSTEM_NAMES: Record<System, string> = {
  direct: "direct (the simulator)",
  nginx: "nginx (proxy_buffering off, upstream keep-alive, 1 worker)",
  bare: "bare Deno proxy (bench/bare_proxy.ts)",
  serial: "serial bare proxy, one request at a time (bench/bare_serial.ts)",
  foreman: "foreman",
};

/**
 * The peers section: every system measured in the same rotation of rounds against direct. Added
 * latency is the median over rounds of (system − direct) in the same round; rates are ×direct.
 */
export function peersTable(r: Results): string {
  const p = r.proxy?.peers;
  if (!p) return "";
  const rows = [
    "| system | sync c=1 p50 / p99 (ms) | added p50 / p99 (ms) | req/s c=1 | req/s c=16 (× direct) " +
    "| time to first chunk added p50 (ms) | relay ceiling chunks/s (× direct) |",
    "|---|---:|---:|---:|---:|---:|---:|",
  ];
  for (const s of ["direct", "nginx", "bare", "serial", "foreman"] as System[]) {
    const c1 = p.syncC1[s];
    if (!c1) continue;
    const c16 = p.syncC16[s]!;
    const t = p.ttfc[s];
    const ceil = p.ceiling[s];
    const direct = s === "direct";
    rows.push(
      `| ${SYSTEM_NAMES[s]} | ${f(c1.foreman.p50)} / ${f(c1.foreman.p99)} | ${
        direct ? "" : `${signed(c1.addedP50)} / ${signed(c1.addedP99)}`
      } | ${n(c1.foreman.rate)} | ${n(c16.foreman.rate)}${
        direct ? "" : ` (×${f(c16.rateRatio)})`
      } | ${!t ? "–" : direct ? `(${f(t.direct.p50)})` : signed(t.addedP50)} | ${
        ceil ? n(ceil.foreman) + (direct ? "" : ` (×${f(ceil.ratio)})`) : "–"
      } |`,
    );
  }
  const note = "skipped" in p.nginx
    ? `nginx: left out, ${p.nginx.skipped}.`
    : `nginx ${p.nginx.version}. nginx writes on what it has read from the target in one go, so ` +
      "an unthrottled stream of small lines reaches the client in fewer, larger reads: its relay " +
      "ceiling can pass direct's, where the client reads each of the simulator's writes.";
  const serial = p.syncC16.serial
    ? " The serial bare proxy reads each answer whole before the next request goes out, as " +
      "foreman's single worker runs one job at a time: its rate at concurrency 16 is the most any " +
      "one-at-a-time worker gets from this simulator, which answers a lone request more slowly " +
      "than one of many."
    : "";
  return rows.join("\n") + "\n\n" + note + serial;
}

export function machineLine(r: Results): string {
  const m = r.machine;
  return `${m.cpus} CPUs (${m.cpuModel}), ${f(m.memoryGiB, 1)} GiB RAM, Linux ${m.kernel}, ` +
    `Deno ${m.deno} (V8 ${m.v8}), SQLite ${m.sqlite}, temp files on ${m.tempFs}`;
}

export function markdown(r: Results): string {
  const load = Object.entries(r.load).map(([k, v]) => `${k} ${f(v.before)}→${f(v.after)}`).join(
    ", ",
  );
  return [
    `Mode: ${r.mode}; command: \`${r.command}\`; ${r.startedAt} → ${r.finishedAt}`,
    "",
    `Machine: ${machineLine(r)}`,
    "",
    `1-minute load average before→after each part: ${load}`,
    "",
    resultsTable(r),
    "",
    ...(r.proxy?.peers ? ["Peers, measured in the same rounds:", "", peersTable(r), ""] : []),
    targetsTable(r),
    "",
  ].join("\n");
}
