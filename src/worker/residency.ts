// Two-slot residency at the target: slot 1 holds the embedder (warmed with keep_alive -1 and never
// unloaded by foreman), slot 2 rotates among worker models. A swap is explicit: unload every other
// worker model first, then load the next one, so the target never has to evict on its own. A /v1
// job carries no keep_alive and may leave the model on Ollama's default expiry: the worker pins it
// again once it has been idle a moment (ADR-0016).

import { errorMessage, type Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import { type TargetClient, TargetHttpError } from "../ollama/client.ts";
import type { Inventory } from "../ollama/inventory.ts";
import { type ModelInfo, sameModel } from "../ollama/models.ts";
import { type Endpoint, isOpenAI } from "../queue/states.ts";
import { keepAliveSeconds } from "../units.ts";

export interface ResidencyOptions {
  client: TargetClient;
  inventory: Inventory;
  log: Logger;
  metrics: Metrics;
  embedModel: string;
  /** keep_alive for worker models, in ms (negative = forever). */
  keepAlive: number;
}

export class Residency {
  /** The worker model foreman last made resident; undefined after a failure or at start. */
  #current: string | undefined;
  /**
   * The native route of the /v1 job that ran on `current` since foreman last pinned it: Ollama
   * gave the model its default expiry if that job (re)loaded it. Undefined while the pin holds.
   */
  #unpinnedBy: "chat" | "generate" | undefined;
  /** A model whose runner went silent on a job: unloaded before it is loaded again. */
  #stale: string | undefined;
  readonly #o: ResidencyOptions;

  constructor(options: ResidencyOptions) {
    this.#o = options;
  }

  /** The worker model foreman believes resident (drain-by-model prefers its jobs), if any. */
  get current(): string | undefined {
    return this.#current;
  }

  /**
   * Forgets the resident model: after the target failed, what it holds is unknown, and the next
   * job checks /api/ps instead of trusting foreman's memory.
   */
  forget(): void {
    this.#current = undefined;
    this.#unpinnedBy = undefined;
  }

  /**
   * Forgets the resident model and has the next `ensure` unload `model` before loading it, even
   * if the target lists it: its runner went silent on a job, and only a fresh one is sure to
   * answer.
   */
  reloadNext(model: string): void {
    this.forget();
    this.#stale = model;
  }

  /** Whether a /v1 job may have left the resident model on Ollama's default expiry. */
  get unpinned(): boolean {
    return this.#unpinnedBy !== undefined;
  }

  /**
   * Notes that a job of `endpoint` is about to run on the resident model. A /v1 job sends no
   * keep_alive: if it (re)loads the model, Ollama gives it the default 5 minutes. A native job
   * that completes carries foreman's keep_alive and pins the model itself (`pinned`).
   */
  running(endpoint: Endpoint): void {
    if (isOpenAI(endpoint)) this.#unpinnedBy = nativeEndpoint(endpoint);
  }

  /** A native job carrying foreman's keep_alive ran on the resident model: the pin holds again. */
  pinned(): void {
    this.#unpinnedBy = undefined;
  }

  /**
   * Pins the resident model again after /v1 jobs: a load request with foreman's keep_alive, which
   * Ollama answers without a reload while the runner's options match (a /v1 request sets no runner
   * option). Returns whether it sent one.
   */
  async repin(options: { signal?: AbortSignal } = {}): Promise<boolean> {
    const model = this.#current;
    const endpoint = this.#unpinnedBy;
    if (model === undefined || endpoint === undefined) return false;
    const { client, log } = this.#o;
    const started = performance.now();
    await client.json(`/api/${endpoint}`, {
      body: this.#loadRequest(model, endpoint),
      signal: options.signal,
    });
    this.#unpinnedBy = undefined;
    log.info("worker model pinned again after /v1 jobs", {
      model,
      ms: Math.round(performance.now() - started),
    });
    return true;
  }

  /** Seeds `current` from the target's /api/ps: a resident model other than the embedder. */
  adopt(ps: ModelInfo[]): void {
    if (this.#current) return;
    const worker = ps.find((m) => !this.isEmbedder(m.name));
    if (worker) this.#current = worker.name;
  }

  isEmbedder(model: string): boolean {
    return this.#o.embedModel !== "" && sameModel(model, this.#o.embedModel);
  }

  /**
   * Makes `model` the resident worker model. Returns "resident" when nothing had to happen,
   * "loaded" after a cold load, "swapped" after unloading another worker model first.
   */
  async ensure(
    model: string,
    options: { endpoint: Endpoint; signal: AbortSignal },
  ): Promise<"resident" | "loaded" | "swapped"> {
    const { signal } = options;
    const endpoint = nativeEndpoint(options.endpoint);
    const { client, inventory, log, metrics } = this.#o;
    if (this.#current && sameModel(this.#current, model)) return "resident";
    const ps = await client.json<{ models: ModelInfo[] }>("/api/ps", { signal });
    inventory.updatePs(ps);
    const stale = (name: string) => this.#stale !== undefined && sameModel(name, this.#stale);
    const others = (ps.models ?? []).filter((m) =>
      !sameModel(m.name, model) && !this.isEmbedder(m.name)
    );
    const reload = (ps.models ?? []).filter((m) => sameModel(m.name, model) && stale(m.name));
    const alreadyLoaded = (ps.models ?? []).some((m) => sameModel(m.name, model));
    const previous = this.#current;
    if (alreadyLoaded && others.length === 0 && reload.length === 0) {
      this.#current = model;
      return "resident";
    }
    this.#current = undefined;
    this.#unpinnedBy = undefined;
    for (const m of others) {
      log.info("unloading worker model", { model: m.name, next: model });
      await client.json("/api/generate", { body: { model: m.name, keep_alive: 0 }, signal });
    }
    for (const m of reload) {
      log.info("unloading a worker model that went silent, to load it afresh", { model: m.name });
      await client.json("/api/generate", { body: { model: m.name, keep_alive: 0 }, signal });
    }
    this.#stale = undefined;
    const swapped = others.length > 0 || (previous !== undefined && !sameModel(previous, model));
    log.info("loading worker model", { model, previous: previous ?? null });
    const started = performance.now();
    await client.json(`/api/${endpoint}`, { body: this.#loadRequest(model, endpoint), signal });
    metrics.loads.inc({ model });
    if (swapped) metrics.swaps.inc();
    log.info("worker model resident", { model, ms: Math.round(performance.now() - started) });
    this.#current = model;
    return swapped ? "swapped" : "loaded";
  }

  #loadRequest(model: string, endpoint: "chat" | "generate"): Record<string, unknown> {
    const keep_alive = keepAliveSeconds(this.#o.keepAlive);
    return endpoint === "chat"
      ? { model, messages: [], keep_alive, stream: false }
      : { model, prompt: "", keep_alive, stream: false };
  }

  /** Loads the embedder with keep_alive -1 (slot 1). Failures are logged, never fatal. */
  async warmEmbedder(): Promise<boolean> {
    const { client, log, embedModel } = this.#o;
    if (!embedModel) return false;
    try {
      await client.json("/api/embed", { body: { model: embedModel, input: [], keep_alive: -1 } });
      log.info("embedder resident", { model: embedModel });
      return true;
    } catch (err) {
      const level = err instanceof TargetHttpError ? "error" : "warn";
      log[level]("cannot warm the embedder", { model: embedModel, error: errorMessage(err) });
      return false;
    }
  }

  /** Whether the last /api/ps shows the embedder resident. */
  embedderResident(ps: ModelInfo[]): boolean {
    return ps.some((m) => this.isEmbedder(m.name));
  }
}

/** The native route that loads a model for a job of `endpoint`: /v1 chat is Ollama's chat. */
function nativeEndpoint(endpoint: Endpoint): "chat" | "generate" {
  return endpoint === "chat" || endpoint === "openai.chat" ? "chat" : "generate";
}
