// Ollama's scheduler (server/sched.go) with OLLAMA_NUM_PARALLEL=1: loading, eviction, keep_alive
// expiry, reloads when runner options change, one FIFO whose head blocks everything behind it, and
// one request at a time per loaded model (the runner's Slot).

import { aborted, FOREVER_SHOWN_MS, now, sleep } from "./time.ts";

const MAX_TIMER_MS = 2 ** 31 - 1;

export class Canceled extends Error {
  constructor() {
    super("request canceled");
  }
}

export class QueueFull extends Error {
  constructor() {
    super("server busy, please try again.  maximum pending requests exceeded");
  }
}

/** The llama server's semaphore: one holder, FIFO waiters. */
export class Slot {
  #busy = false;
  #waiters: (() => void)[] = [];

  async acquire(signal: AbortSignal): Promise<void> {
    if (signal.aborted) throw new Canceled();
    if (!this.#busy) {
      this.#busy = true;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const grant = () => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = () => {
        this.#waiters = this.#waiters.filter((w) => w !== grant);
        reject(new Canceled());
      };
      this.#waiters.push(grant);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  release(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#busy = false;
  }
}

/** Options whose change makes Ollama restart the runner (api.Runner). */
export interface RunnerOpts {
  numCtx: number;
  numBatch: number;
  numGpu: number;
  mainGpu: number;
  useMmap: boolean | null;
  numThread: number;
}

export function runnerOpts(options: Record<string, unknown> | undefined): RunnerOpts {
  const num = (key: string, fallback: number) => {
    const v = options?.[key];
    return typeof v === "number" ? Math.trunc(v) : fallback;
  };
  return {
    numCtx: Math.max(4, num("num_ctx", 4096)),
    numBatch: num("num_batch", 512),
    numGpu: num("num_gpu", -1),
    mainGpu: num("main_gpu", 0),
    useMmap: typeof options?.use_mmap === "boolean" ? options.use_mmap : null,
    numThread: num("num_thread", 0),
  };
}

/** runnerRef.needsReload: a request asking for num_gpu < 0 accepts any GPU split. */
export function needsReload(have: RunnerOpts, want: RunnerOpts): boolean {
  const gpu = want.numGpu < 0 ? -1 : have.numGpu;
  return have.numCtx !== want.numCtx || have.numBatch !== want.numBatch ||
    gpu !== (want.numGpu < 0 ? -1 : want.numGpu) || have.mainGpu !== want.mainGpu ||
    have.useMmap !== want.useMmap || have.numThread !== want.numThread;
}

export class Runner {
  state: "loading" | "ready" | "gone" = "loading";
  refCount = 0;
  /** Set when the runner goes idle; undefined until then (Ollama's zero time). */
  expiresAt: number | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;
  lastUsed = Date.now();
  readonly slot = new Slot();
  readonly ready: Promise<void>;
  readonly gone: Promise<void>;
  markReady!: () => void;
  markGone!: () => void;

  constructor(readonly name: string, readonly opts: RunnerOpts, public sessionMs: number) {
    this.ready = new Promise((r) => this.markReady = r);
    this.gone = new Promise((r) => this.markGone = r);
  }
}

interface Pending {
  name: string;
  opts: RunnerOpts;
  keepAliveMs: number | undefined;
  signal: AbortSignal;
  resolve(r: Runner): void;
  reject(e: Error): void;
}

export interface SchedulerConfig {
  loadMs: number;
  maxLoaded: number;
  keepAliveMs: number;
  maxQueue: number;
  log(kind: "load" | "unload", model: string): void;
}

export class Scheduler {
  /** Loaded and loading runners by model name, in load order. */
  readonly loaded = new Map<string, Runner>();
  #pending: Pending[] = [];
  #pumping = false;
  #closed = false;
  #cfg: SchedulerConfig;

  constructor(cfg: SchedulerConfig) {
    this.#cfg = cfg;
  }

  /** GetRunner: the model's runner with a reference held for the caller, who must release() it. */
  async acquire(
    name: string,
    opts: RunnerOpts,
    keepAliveMs: number | undefined,
    signal: AbortSignal,
  ): Promise<Runner> {
    if (signal.aborted || this.#closed) throw new Canceled();
    // A usable loaded runner is handed out at once, without queueing behind other models.
    const r = this.loaded.get(name);
    if (r && !needsReload(r.opts, opts)) {
      if (r.state === "loading") {
        await Promise.race([r.ready, aborted(signal)]);
        if (signal.aborted) throw new Canceled();
      }
      if (r.state === "ready" && this.loaded.get(name) === r) {
        this.#use(r, keepAliveMs);
        return r;
      }
    }
    if (this.#pending.length >= this.#cfg.maxQueue) throw new QueueFull();
    return await new Promise<Runner>((resolve, reject) => {
      const onAbort = () => {
        const i = this.#pending.indexOf(p);
        if (i < 0) return; // already handed to a load, which watches the signal itself
        this.#pending.splice(i, 1);
        reject(new Canceled());
      };
      const p: Pending = {
        name,
        opts,
        keepAliveMs,
        signal,
        resolve: (runner) => {
          signal.removeEventListener("abort", onAbort);
          resolve(runner);
        },
        reject: (e) => {
          signal.removeEventListener("abort", onAbort);
          reject(e);
        },
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.#pending.push(p);
      void this.#pump();
    });
  }

  /** The request's context ended: drop the reference; an idle runner starts its keep_alive. */
  release(r: Runner): void {
    r.refCount--;
    r.lastUsed = Date.now();
    if (r.state !== "ready" || r.refCount > 0 || this.#closed) return;
    if (r.sessionMs <= 0) {
      this.#unload(r);
      return;
    }
    r.expiresAt = now() + (Number.isFinite(r.sessionMs) ? r.sessionMs : FOREVER_SHOWN_MS);
    this.#arm(r);
  }

  /** expireRunner: keep_alive 0 with nothing to do unloads now, or once the runner is idle. */
  async expire(name: string): Promise<void> {
    const r = this.loaded.get(name);
    if (!r) return;
    if (r.state === "loading") await r.ready;
    if (r.state !== "ready") return;
    r.expiresAt = now();
    this.#disarm(r);
    r.sessionMs = 0;
    if (r.refCount <= 0) this.#unload(r);
  }

  /** What a restarted Ollama has: nothing loaded, nothing queued. */
  forget(): void {
    for (const p of this.#pending.splice(0)) p.reject(new Canceled());
    for (const r of [...this.loaded.values()]) this.#unload(r);
  }

  /** Stops for good: no timers, no waiters; the loaded list stays for inspection. */
  close(): void {
    this.#closed = true;
    for (const p of this.#pending.splice(0)) p.reject(new Canceled());
    for (const r of this.loaded.values()) {
      this.#disarm(r);
      r.markReady();
      r.markGone();
    }
  }

  /** /api/ps rows: loading models included, longest time left first. */
  ps(): { runner: Runner; expiresAt: number }[] {
    const t = now();
    return [...this.loaded.values()]
      .map((runner) => ({
        runner,
        expiresAt: runner.expiresAt ??
          t + (Number.isFinite(runner.sessionMs) ? runner.sessionMs : FOREVER_SHOWN_MS),
      }))
      .sort((a, b) => Math.floor(b.expiresAt / 1000) - Math.floor(a.expiresAt / 1000));
  }

  /** processPending: one FIFO whose head blocks everything behind it while it evicts and loads. */
  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      for (let p = this.#pending[0]; !this.#closed && p; p = this.#pending[0]) {
        const r = this.loaded.get(p.name);
        if (r) {
          if (r.state === "loading") {
            await r.ready;
          } else if (needsReload(r.opts, p.opts)) {
            await this.#evict(r);
          } else {
            this.#pending.shift();
            this.#use(r, p.keepAliveMs);
            p.resolve(r);
          }
        } else if (this.loaded.size < this.#cfg.maxLoaded) {
          this.#pending.shift();
          this.#load(p);
        } else {
          await this.#evict(this.#victim());
        }
      }
    } finally {
      this.#pumping = false;
    }
  }

  /** findRunnerToUnload: an idle runner with the shortest keep_alive, least recently used first
   * (Ollama breaks that tie by blob path, i.e. arbitrarily); if none is idle, the first anyway. */
  #victim(): Runner {
    const list = [...this.loaded.values()].sort((a, b) =>
      (a.sessionMs === b.sessionMs ? 0 : a.sessionMs < b.sessionMs ? -1 : 1) ||
      a.lastUsed - b.lastUsed
    );
    return list.find((r) => r.state === "ready" && r.refCount === 0) ?? list[0]!;
  }

  async #evict(r: Runner): Promise<void> {
    if (r.state === "loading") await r.ready;
    if (r.state === "gone") return;
    this.#disarm(r);
    r.sessionMs = 0;
    if (r.refCount <= 0) this.#unload(r);
    else await r.gone; // its last request's release() unloads it
  }

  #load(p: Pending): void {
    const r = new Runner(p.name, p.opts, p.keepAliveMs ?? this.#cfg.keepAliveMs);
    this.loaded.set(p.name, r);
    this.#cfg.log("load", p.name);
    void (async () => {
      const loaded = await sleep(this.#cfg.loadMs, p.signal);
      if (r.state === "gone") {
        p.reject(new Canceled());
      } else if (!loaded) {
        // WaitUntilRunning(req.ctx) failed: Ollama expires a runner whose loading request went away.
        this.#unload(r);
        p.reject(new Canceled());
      } else {
        r.state = "ready";
        r.refCount = 1;
        r.lastUsed = Date.now();
        r.markReady();
        p.resolve(r);
      }
    })();
  }

  #use(r: Runner, keepAliveMs: number | undefined): void {
    r.refCount++;
    r.lastUsed = Date.now();
    this.#disarm(r);
    if (keepAliveMs !== undefined) r.sessionMs = keepAliveMs;
  }

  #unload(r: Runner): void {
    if (r.state === "gone" || this.#closed) return;
    this.#disarm(r);
    r.state = "gone";
    if (this.loaded.get(r.name) === r) this.loaded.delete(r.name);
    this.#cfg.log("unload", r.name);
    r.markReady();
    r.markGone();
  }

  #arm(r: Runner): void {
    this.#disarm(r);
    if (!Number.isFinite(r.sessionMs) || r.expiresAt === undefined) return;
    const wait = Math.min(Math.max(0, r.expiresAt - now()), MAX_TIMER_MS);
    r.timer = setTimeout(() => {
      r.timer = undefined;
      if (r.state !== "ready" || r.refCount > 0) return;
      if (now() >= r.expiresAt!) this.#unload(r);
      else this.#arm(r);
    }, wait);
  }

  #disarm(r: Runner): void {
    if (r.timer !== undefined) clearTimeout(r.timer);
    r.timer = undefined;
  }
}
