// Shared parts of the reliability suites: their size (CI or soak), a seeded PRNG so every run can
// be replayed, a webhook receiver that can go down and misbehave per job, and small readers for
// the daemon's memory, its metrics and its database.

import { DatabaseSync } from "node:sqlite";
import type { ForemanProcess } from "../../harness/foreman.ts";

/** FOREMAN_SOAK=1 runs the full-size suites (`deno task soak`); otherwise the bounded CI size. */
export const SOAK = Deno.env.get("FOREMAN_SOAK") === "1";

/** The CI figure or the soak figure. */
export function scale(ci: number, soak: number): number {
  return SOAK ? soak : ci;
}

/** The seed of a suite: FOREMAN_SEED replays a run, else the suite's fixed default. */
export function seedFor(fallback: number): number {
  const given = Deno.env.get("FOREMAN_SEED");
  return given ? Number(given) : fallback;
}

/** mulberry32: small, fast and good enough to pick faults and timings reproducibly. */
export class Rng {
  #s: number;
  constructor(readonly seed: number) {
    this.#s = seed >>> 0;
  }
  next(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  pick<T>(items: readonly T[]): T {
    const item = items[Math.floor(this.next() * items.length)];
    if (item === undefined) throw new RangeError("Cannot pick from an empty list");
    return item;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

/**
 * Prints one figure line for docs/reliability.md and, when FOREMAN_RELIABILITY_REPORT names a
 * file, appends it there as JSON so a soak run leaves its numbers behind.
 */
export async function report(scenario: string, figures: Record<string, unknown>): Promise<void> {
  const line = JSON.stringify({ scenario, size: SOAK ? "soak" : "ci", ...figures });
  console.log(`[reliability] ${line}`);
  const file = Deno.env.get("FOREMAN_RELIABILITY_REPORT");
  if (file) await Deno.writeTextFile(file, line + "\n", { append: true });
}

/** Resident memory of a process in MiB, from /proc/<pid>/status. */
export function rssMiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!kb) throw new Error(`Cannot read VmRSS of process ${pid}`);
  return Number(kb[1]) / 1024;
}

/** Whether process `pid` still runs (and is not a zombie). */
export function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(Deno.readTextFileSync(`/proc/${pid}/status`));
  } catch {
    return false;
  }
}

/** A parsed answer; tests check it field by field. */
// deno-lint-ignore no-explicit-any
export type Json = Record<string, any>;

/** A JSON call to foreman with its token; the body is parsed when it is JSON. */
export async function call(
  fm: ForemanProcess,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; json: Json }> {
  const res = await fetch(fm.url + path, {
    method,
    headers: fm.headers(headers),
    body: body === undefined ? undefined : JSON.stringify(body),
    // A hung foreman must fail the suite, not hang it.
    signal: AbortSignal.timeout(5_000),
  });
  const text = await res.text();
  let json: Json = {};
  try {
    json = JSON.parse(text);
  } catch { /* not JSON: left empty */ }
  return { status: res.status, headers: res.headers, json };
}

/** The value of one sample of a metric family in Prometheus text, 0 when absent. */
export function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = (m[2] ?? "").split(",");
    if (want.every((w) => have.includes(w))) return Number(m[3]);
  }
  return 0;
}

/** Opens foreman's database read-only (WAL lets it read while foreman writes). */
export function openDb(path: string): DatabaseSync {
  return new DatabaseSync(path, { readOnly: true });
}

/** What a {@link Hook} answers to one delivery. */
export interface HookAnswer {
  status: number;
  headers?: Record<string, string>;
  /** Wait this long before answering. */
  delayMs?: number;
}

export interface HookDelivery {
  at: number;
  path: string;
  id: string;
  status: number;
  event: Record<string, unknown>;
}

/**
 * A webhook receiver whose answer is chosen per delivery (by path, attempt, anything) and that can
 * go down and come back on the same port, as a redeployed service does.
 */
export class Hook {
  readonly deliveries: HookDelivery[] = [];
  port = 0;
  #server?: Deno.HttpServer;
  #answer: (path: string, attempt: number) => HookAnswer;

  private constructor(answer: (path: string, attempt: number) => HookAnswer) {
    this.#answer = answer;
  }

  static async start(
    answer: (path: string, attempt: number) => HookAnswer = () => ({ status: 200 }),
  ): Promise<Hook> {
    const hook = new Hook(answer);
    await hook.up();
    return hook;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Deliveries of events that were answered 2xx. */
  ok(): HookDelivery[] {
    return this.deliveries.filter((d) => d.status >= 200 && d.status < 300);
  }

  async up(): Promise<void> {
    const ready = Promise.withResolvers<void>();
    for (let attempt = 0;; attempt++) {
      try {
        this.#server = Deno.serve({
          hostname: "127.0.0.1",
          port: this.port,
          onListen: (a) => {
            this.port = a.port;
            ready.resolve();
          },
        }, async (req) => {
          const path = new URL(req.url).pathname;
          const body = await req.text();
          const id = req.headers.get("webhook-id") ?? "";
          const attempt = this.deliveries.filter((d) => d.id === id).length + 1;
          const a = this.#answer(path, attempt);
          let event: Record<string, unknown> = {};
          try {
            event = JSON.parse(body);
          } catch { /* kept empty */ }
          // Recorded on arrival: a slow answer still means the event reached the receiver.
          this.deliveries.push({ at: Date.now(), path, id, status: a.status, event });
          if (a.delayMs) await new Promise((r) => setTimeout(r, a.delayMs));
          return new Response(a.status === 204 ? null : "ok", {
            status: a.status,
            headers: a.headers,
          });
        });
        break;
      } catch (e) {
        if (!(e instanceof Deno.errors.AddrInUse) || attempt >= 50) throw e;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    await ready.promise;
  }

  /** Stops listening; deliveries fail to connect until up(). */
  async down(): Promise<void> {
    await this.#server?.shutdown();
    this.#server = undefined;
  }

  close(): Promise<void> {
    return this.down();
  }
}

/** SIGTERM and wait, but at most `ms`: a shutdown that hangs fails the suite instead of hanging it. */
export async function stopWithin(fm: ForemanProcess, ms = 15_000): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((r) => timer = setTimeout(() => r("late"), ms));
  const outcome = await Promise.race([fm.stop().then(() => "stopped" as const), late]);
  clearTimeout(timer);
  if (outcome === "late") {
    await fm.kill();
    throw new Error(`foreman did not stop within ${ms} ms of SIGTERM`);
  }
}

/** Runs every cleanup step even when an earlier one throws (a process that already died). */
export async function cleanup(...steps: (() => Promise<unknown> | unknown)[]): Promise<void> {
  for (const step of steps) {
    try {
      await step();
    } catch { /* keep cleaning */ }
  }
}
