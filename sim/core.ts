// The state every route works on: the settings, the models on disk, the scheduler, the armed faults
// and the event log tests read. OllamaSim (server.ts) owns one Core and exposes it.

import { Catalog } from "./catalog.ts";
import type { Config } from "./config.ts";
import { Faults } from "./faults.ts";
import { INFERENCE_PATHS, json } from "./http.ts";
import { fullName } from "./names.ts";
import { QueueFull, type Runner, runnerOpts, Scheduler } from "./scheduler.ts";
import { now } from "./time.ts";

/** One entry of {@link OllamaSim.events}; `at` is epoch milliseconds with sub-millisecond precision. */
export interface SimEvent {
  at: number;
  /** request: an inference request named a model; start/end: a generation or embedding held the
   * model's single slot; load: a model began loading; unload: it left memory. */
  kind: "load" | "unload" | "request" | "start" | "end";
  /** Full model name ("tiny-a:latest"); for a request naming an unknown model, the name as sent. */
  model: string;
  path?: string;
}

/** One entry of {@link OllamaSim.requests}: every request received, whatever its fate. */
export interface SimRequest {
  method: string;
  path: string;
  headers: Headers;
  /** Parsed JSON, else the text, else undefined when empty; the raw bytes for /api/blobs uploads. */
  body: unknown;
  /** For /v1 chat, completion and embedding requests: the native request Ollama's middleware made
   * of the body (what /api/chat, /api/generate or /api/embed then ran), once it got that far. */
  native?: Record<string, unknown>;
}

export class Core {
  readonly events: SimEvent[] = [];
  readonly catalog: Catalog;
  /** Hex digests of the blobs uploaded to /api/blobs. */
  readonly blobs = new Set<string>();
  readonly sched: Scheduler;
  readonly faults = new Faults();
  #active = new Map<string, number>();
  #activeAll = 0;
  #max = new Map<string, number>();
  #maxAll = 0;

  constructor(readonly cfg: Config) {
    this.catalog = new Catalog(cfg.capabilities);
    const born = now();
    cfg.models.forEach((m, i) => this.catalog.add(fullName(m), born - i * 1000));
    this.sched = new Scheduler({
      loadMs: cfg.loadMs,
      maxLoaded: cfg.maxLoaded,
      keepAliveMs: cfg.keepAliveMs,
      maxQueue: cfg.maxQueue,
      log: (kind, model) => this.log(kind, model),
    });
  }

  log(kind: SimEvent["kind"], model: string, path?: string): void {
    this.events.push(
      path === undefined ? { at: now(), kind, model } : { at: now(), kind, model, path },
    );
  }

  /** scheduleRunner as a route calls it: the model's runner with a reference held, which the caller
   * must release; or the response Ollama gives when its queue is full or the client left. */
  async hold(
    name: string,
    options: Record<string, unknown> | undefined,
    keepAliveMs: number | undefined,
    signal: AbortSignal,
  ): Promise<Runner | Response> {
    try {
      return await this.sched.acquire(name, runnerOpts(options), keepAliveMs, signal);
    } catch (e) {
      if (e instanceof QueueFull) return json(503, { error: e.message });
      return json(499, { error: "request canceled" });
    }
  }

  /** A generation or embedding took the model's slot. */
  begin(model: string, path: string): void {
    this.log("start", model, path);
    if (!INFERENCE_PATHS.includes(path)) return;
    const n = (this.#active.get(model) ?? 0) + 1;
    this.#active.set(model, n);
    this.#max.set(model, Math.max(this.#max.get(model) ?? 0, n));
    this.#activeAll++;
    this.#maxAll = Math.max(this.#maxAll, this.#activeAll);
  }

  end(model: string, path: string): void {
    this.log("end", model, path);
    if (!INFERENCE_PATHS.includes(path)) return;
    this.#active.set(model, (this.#active.get(model) ?? 1) - 1);
    this.#activeAll--;
  }

  /** Most generations seen running at once, for one model (any spelling) or over all. */
  maxConcurrent(model?: string): number {
    if (model === undefined) return this.#maxAll;
    return this.#max.get(this.catalog.get(model)?.name ?? fullName(model)) ?? 0;
  }
}
