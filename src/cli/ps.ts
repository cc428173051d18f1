// `foreman ps`: what a running foreman sees: whether its target answers and which Ollama version
// it runs (GET /healthz), the queue depth, and the models resident on the target (GET /api/ps,
// live, or foreman's last inventory when the target is away).

import { parseArgs } from "node:util";
import { CliError, type ForemanClient } from "./client.ts";
import { age, bytes, table } from "./format.ts";
import type { Io } from "./io.ts";

export const PS_USAGE = `usage: foreman ps [--json]

Shows a running foreman's target (reachability, Ollama version, last poll), its queue and the
models resident on the target.

env: FOREMAN_URL (default http://127.0.0.1:8080), FOREMAN_TOKEN`;

/** GET /healthz; everything past `degraded` comes only with the token (or server.health_detail). */
interface Health {
  status: string;
  degraded: boolean;
  target?: { reachable: boolean; last_poll: string | null; version: string | null };
  queue?: { queued: number; running: number };
  worker_model?: string | null;
}

interface PsModel {
  name: string;
  size?: number;
  size_vram?: number;
  expires_at?: string;
}

/** Ollama reports keep_alive -1 as an expiry centuries away. */
const FOREVER_MS = 100 * 365 * 86400_000;

export async function ps(args: string[], io: Io, client: () => ForemanClient): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { json: { type: "boolean" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help) {
    io.out(PS_USAGE);
    return 0;
  }
  const fm = client();
  // With the token: /healthz shows the target and the queue only to token holders.
  const health = (await fm.json<Health>("GET", "/healthz")).body;
  let live: { headers: Headers; body: { models: PsModel[] } } | undefined;
  let psProblem = "";
  try {
    live = await fm.json<{ models: PsModel[] }>("GET", "/api/ps");
  } catch (err) {
    // A wrong token or an unreachable foreman says nothing useful below: report it alone.
    if (!(err instanceof CliError) || err.status === undefined || err.status === 401) throw err;
    psProblem = err.message;
  }
  const cached = live?.headers.get("x-foreman-cached") === "true";
  const models = live?.body.models ?? [];
  if (values.json) {
    io.out(JSON.stringify({ health, ps: live?.body ?? null, ps_cached: cached }, null, 2));
    if (psProblem) io.err(`foreman ps: resident models unavailable: ${psProblem}`);
    return psProblem ? 1 : 0;
  }

  const now = io.now();
  const head = [["foreman", `${fm.url}  ${health.status}`]];
  const t = health.target;
  if (t) {
    const lastPoll = t.last_poll
      ? `last poll ${age(now - Date.parse(t.last_poll))} ago`
      : "never polled";
    const version = t.version ? `ollama ${t.version}` : "version unknown";
    const reach = t.reachable ? "reachable" : "unreachable (degraded)";
    head.push(["target", `${reach}, ${version}, ${lastPoll}`]);
  } else {
    head.push(["target", health.degraded ? "unreachable (degraded)" : "reachable"]);
  }
  if (health.queue) {
    head.push(["queue", `${health.queue.queued} queued, ${health.queue.running} running`]);
  }
  if (health.worker_model) head.push(["worker", health.worker_model]);
  for (const line of table(head)) io.out(line);
  io.out("");
  if (psProblem) {
    io.err(`foreman ps: resident models unavailable: ${psProblem}`);
    return 1;
  }
  if (models.length === 0) {
    io.out(`no models resident${cached ? " (as of the last poll)" : ""}`);
    return 0;
  }
  if (cached) io.out("resident models as of the last poll (the target did not answer):");
  const rows = models.map((m) => [
    m.name,
    m.size === undefined ? "-" : bytes(m.size),
    vram(m),
    until(m.expires_at, now),
  ]);
  for (const line of table([["NAME", "SIZE", "PROCESSOR", "UNTIL"], ...rows])) io.out(line);
  return 0;
}

function vram(m: PsModel): string {
  if (!m.size || m.size_vram === undefined) return "-";
  const gpu = Math.round((m.size_vram / m.size) * 100);
  if (gpu >= 100) return "100% GPU";
  if (gpu <= 0) return "100% CPU";
  return `${100 - gpu}%/${gpu}% CPU/GPU`;
}

function until(expires: string | undefined, now: number): string {
  if (!expires) return "-";
  const left = Date.parse(expires) - now;
  if (Number.isNaN(left)) return "-";
  if (left > FOREVER_MS) return "forever";
  return left <= 0 ? "expiring" : `${age(left)} from now`;
}
