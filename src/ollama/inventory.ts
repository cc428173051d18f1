// The inventory poller: what models the target has (/api/tags), which are resident (/api/ps) and its
// version. When the target cannot be reached foreman keeps the last good inventory, reports itself
// degraded and keeps accepting work; the inventory is persisted so a restart during an outage still
// knows the models.

import { sleep } from "../async.ts";
import { errorMessage, type Logger } from "../log.ts";
import type { Store } from "../queue/store.ts";
import type { TargetClient } from "./client.ts";
import { type ModelInfo, sameModel } from "./models.ts";

export interface InventorySnapshot {
  /** The target's /api/tags body. */
  tags: { models: ModelInfo[] };
  /** The target's /api/ps body. */
  ps: { models: ModelInfo[] };
  version: string | null;
  /** Epoch ms of the last successful poll, null if none ever succeeded. */
  lastPoll: number | null;
}

export interface InventoryOptions {
  client: TargetClient;
  store: Store;
  log: Logger;
  interval: number;
  now?: () => number;
}

/**
 * Told after every successful poll; `cameBack` when the poll before it failed or none had run,
 * so what foreman knew of the target may be stale.
 */
export type PollListener = (snapshot: InventorySnapshot, poll: { cameBack: boolean }) => void;

export class Inventory {
  #snapshot: InventorySnapshot;
  #reachable = false;
  #everPolled = false;
  #refreshing?: Promise<boolean>;
  /** The poll loop's signal: a poll in flight ends with it (shutdown never waits on the target). */
  #signal?: AbortSignal;
  readonly #o: InventoryOptions;
  readonly #now: () => number;
  readonly #listeners: PollListener[] = [];

  constructor(options: InventoryOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#snapshot = loadSaved(options.store);
  }

  /** Calls `listener` after every successful poll (residency and the worker keep in step). */
  onPoll(listener: PollListener): void {
    this.#listeners.push(listener);
  }

  get snapshot(): InventorySnapshot {
    return this.#snapshot;
  }

  /** Whether the last poll reached the target. */
  get reachable(): boolean {
    return this.#reachable;
  }

  /** Degraded: the target is unreachable and what foreman knows may be stale. */
  get degraded(): boolean {
    return !this.#reachable;
  }

  /**
   * Whether the target has `model`: true/false from the inventory, or undefined when foreman has
   * never seen an inventory and cannot tell.
   */
  has(model: string): boolean | undefined {
    if (this.#snapshot.lastPoll === null) return undefined;
    return this.#snapshot.tags.models.some((m) => sameModel(m.name, model));
  }

  /** Names of the models resident at the target, per the last /api/ps. */
  resident(): string[] {
    return this.#snapshot.ps.models.map((m) => m.name);
  }

  /** Records a live /api/ps answer obtained elsewhere (the /api/ps route, the worker). */
  updatePs(ps: { models: ModelInfo[] }): void {
    this.#snapshot = { ...this.#snapshot, ps };
  }

  /** One poll; concurrent callers share it. Returns whether the target answered. */
  refresh(): Promise<boolean> {
    this.#refreshing ??= this.#poll().finally(() => this.#refreshing = undefined);
    return this.#refreshing;
  }

  async #poll(): Promise<boolean> {
    const { client, log } = this.#o;
    try {
      const [tags, ps, version] = await Promise.all([
        client.json<{ models: ModelInfo[] }>("/api/tags", { signal: this.#signal }),
        client.json<{ models: ModelInfo[] }>("/api/ps", { signal: this.#signal }),
        client.json<{ version: string }>("/api/version", { signal: this.#signal })
          .catch(() => ({ version: null })),
      ]);
      this.#snapshot = {
        tags: { models: tags.models ?? [] },
        ps: { models: ps.models ?? [] },
        version: version.version ?? null,
        lastPoll: this.#now(),
      };
      try {
        this.#o.store.setMeta("inventory", JSON.stringify(this.#snapshot));
      } catch (err) {
        // The target did answer: a failed save (a full disk) must not make it look unreachable.
        log.warn("cannot save the inventory", { error: errorMessage(err) });
      }
      const cameBack = !this.#reachable;
      this.#reachable = true;
      this.#everPolled = true;
      if (cameBack) {
        log.info("target reachable", {
          target: client.baseUrl,
          models: this.#snapshot.tags.models.length,
          version: this.#snapshot.version,
        });
      }
      for (const listener of this.#listeners) listener(this.#snapshot, { cameBack });
      return true;
    } catch (err) {
      if (this.#signal?.aborted) return false; // shutting down: says nothing about the target
      if (this.#reachable || !this.#everPolled) {
        log.warn("target unreachable, serving the last inventory", {
          target: client.baseUrl,
          error: errorMessage(err),
        });
      }
      this.#reachable = false;
      this.#everPolled = true;
      return false;
    }
  }

  /** Polls every `interval` until `signal` aborts. */
  async start(signal: AbortSignal): Promise<void> {
    this.#signal = signal;
    while (!signal.aborted) {
      await this.refresh();
      await sleep(this.#o.interval, signal);
    }
  }
}

function loadSaved(store: Store): InventorySnapshot {
  const saved = store.getMeta("inventory");
  if (saved) {
    try {
      return JSON.parse(saved) as InventorySnapshot;
    } catch {
      // a damaged cache is as good as none
    }
  }
  return { tags: { models: [] }, ps: { models: [] }, version: null, lastPoll: null };
}
