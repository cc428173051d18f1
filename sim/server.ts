// A stand-in for one Ollama v0.11.4 server: its routes, wire format, errors and scheduler (loading,
// eviction, keep_alive, one request at a time per model), plus fault injection for crash suites.
// Tests import OllamaSim from sim/mod.ts; benchmarks run it as a process (sim/main.ts).

/** Options for {@link OllamaSim.start}. Times are in milliseconds. */
export interface SimOptions {
  /** Port to listen on; 0 (the default) picks a free one. */
  port?: number;
  /** Address to listen on (default 127.0.0.1). The Host check applies only on loopback, as in Ollama. */
  hostname?: string;
  /** Models on disk (default tiny-a, tiny-b, tiny-c, embed-e). A name without a tag gets ":latest";
   * a name containing "embed" is an embedding-only model. */
  models?: string[];
  /** Time a model takes to load (default 20). */
  loadMs?: number;
  /** Delay before each generated chunk (default 2; 0 sends chunks as fast as they are read). */
  tokenMs?: number;
  /** Chunks per answer when the request sets no options.num_predict (default 8). */
  tokens?: number;
  /** OLLAMA_MAX_LOADED_MODELS (default 2). */
  maxLoaded?: number;
  /** OLLAMA_KEEP_ALIVE: seconds, or a Go duration such as "5m" (default "5m"). */
  defaultKeepAlive?: string | number;
  /** What GET /api/version answers (default "0.11.4"). */
  version?: string;
  /** Length of embedding vectors (default 8). */
  dimensions?: number;
  /** OLLAMA_MAX_QUEUE: requests waiting for the scheduler beyond this many get a 503 (default 512). */
  maxQueue?: number;
  /** Capabilities of particular models, keyed by name (a name without a tag gets ":latest"), as
   * /api/show lists them. Others get ["completion", "tools", "thinking"], or ["embedding"] when
   * the name contains "embed". Chat and generate refuse think, tools or suffix on a model without
   * "thinking", "tools" or "insert", in Ollama's words. */
  capabilities?: Record<string, SimCapability[]>;
  /** Makes the simulated model loop on one token (answers read "w1 w1 w1 …"), as greedy decoding
   * on a tiny model does, so that Ollama 0.11.4's token-repeat limit applies: an answer longer than
   * 31 tokens stops after the 31st identical chunk with no done:true chunk (status 200; with
   * stream:false the body has done:false and no metrics). Off by default: answers are "w1 w2 …",
   * which never repeat, and always end with done:true. */
  repeatLimit?: boolean;
  /** Pretends the registry is reachable, so /api/pull and /api/push succeed. Off by default: like an
   * Ollama without network (the real-Ollama tier's), they fail with a DNS error. */
  online?: boolean;
}

/** A model capability as Ollama 0.11.4's /api/show lists it. */
export type SimCapability = "completion" | "tools" | "insert" | "vision" | "embedding" | "thinking";

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
}

/** The content a default answer of `n` chunks carries: "w1 w2 … wn". */
export function simWords(n: number): string {
  return Array.from({ length: n }, (_, i) => `w${i + 1}`).join(" ");
}

const DEFAULT_MODELS = ["tiny-a:latest", "tiny-b:latest", "tiny-c:latest", "embed-e:latest"];
/** Go's time.Duration(math.MaxInt64), which Ollama uses for "keep forever", in milliseconds. */
const FOREVER_SHOWN_MS = 9223372036854.775;
const MAX_TIMER_MS = 2 ** 31 - 1;
const MAX_DEAD_CONNS = 4096;
const JSON_TYPE = "application/json; charset=utf-8";
const INFERENCE_PATHS = ["/api/chat", "/api/generate"];
/** Body-stream error that stands for a dropped connection; the server's onError keeps it quiet. */
const DROPPED = new Error("ollama_sim: connection dropped on purpose");

// ---------------------------------------------------------------------------------------------
// Durations, as Go's time.ParseDuration and Ollama's api.Duration read them

const GO_UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "\u00b5s": 1e-3,
  "\u03bcs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Go's time.ParseDuration, in milliseconds; throws with Go's own error text. */
export function parseGoDuration(text: string): number {
  const quoted = `"${text}"`;
  let s = text;
  let negative = false;
  if (s.startsWith("-") || s.startsWith("+")) {
    negative = s[0] === "-";
    s = s.slice(1);
  }
  if (s === "0") return 0;
  if (s === "") throw new Error(`time: invalid duration ${quoted}`);
  let total = 0;
  while (s !== "") {
    const m = /^(\d*)(?:\.(\d*))?/.exec(s)!;
    const [whole, int, frac] = m;
    if (int === "" && (frac === undefined || frac === "")) {
      throw new Error(`time: invalid duration ${quoted}`);
    }
    s = s.slice(whole.length);
    const unit = /^[^\d.]*/.exec(s)![0];
    if (unit === "") throw new Error(`time: missing unit in duration ${quoted}`);
    if (!(unit in GO_UNITS)) throw new Error(`time: unknown unit "${unit}" in duration ${quoted}`);
    s = s.slice(unit.length);
    total += Number(`${int || "0"}.${frac || "0"}`) * GO_UNITS[unit];
  }
  return negative ? -total : total;
}

/** Go's reflect name of a decoded JSON value, for Ollama's "Unsupported type" message. */
function goTypeName(v: unknown): string {
  if (Array.isArray(v)) return "[]interface {}";
  if (typeof v === "boolean") return "bool";
  if (typeof v === "object") return "map[string]interface {}";
  return typeof v;
}

/**
 * Ollama's keep_alive: a number of seconds (truncated; negative = forever) or a Go duration string
 * (negative = forever). Returns milliseconds, Infinity for forever; throws Ollama's 400 message.
 */
export function parseKeepAlive(value: unknown): number {
  if (typeof value === "number") return value < 0 ? Infinity : Math.trunc(value) * 1000;
  if (typeof value === "string") {
    const ms = parseGoDuration(value);
    return ms < 0 ? Infinity : ms;
  }
  throw new Error(`Unsupported type: '${goTypeName(value)}'`);
}

// ---------------------------------------------------------------------------------------------
// Models on "disk"

interface ModelEntry {
  name: string;
  digest: string;
  size: number;
  /** Epoch milliseconds with sub-millisecond precision, shown with nanoseconds as Go does. */
  modifiedMs: number;
  family: string;
  parameterSize: string;
  capabilities: string[];
}

function fnv1a(text: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** A stable 64-hex-digit stand-in for a sha256 digest. */
function fakeDigest(text: string): string {
  let out = "";
  for (let i = 0; i < 8; i++) out += fnv1a(text, fnv1a(`${i}`)).toString(16).padStart(8, "0");
  return out;
}

/** Ollama's short display name: registry and library prefixes dropped, ":latest" added. */
function fullName(name: string): string {
  const n = name.trim().replace(/^registry\.ollama\.ai\//i, "").replace(/^library\//i, "");
  return n.lastIndexOf(":") > n.lastIndexOf("/") ? n : `${n}:latest`;
}

/** Ollama's model.Name.String(): the name with registry and namespace, as capability errors say. */
function longName(name: string): string {
  const parts = fullName(name).split("/");
  if (parts.length === 1) return `registry.ollama.ai/library/${parts[0]}`;
  return parts.length === 2 ? `registry.ollama.ai/${parts.join("/")}` : parts.join("/");
}

/** Where Ollama's pull and push reach the registry for a model. */
function registryOf(name: string): { host: string; repo: string; tag: string } {
  const full = fullName(name);
  const colon = full.lastIndexOf(":");
  const parts = full.slice(0, colon).split("/");
  const host = parts.length === 3 ? parts.shift()! : "registry.ollama.ai";
  if (parts.length === 1) parts.unshift("library");
  return { host, repo: `https://${host}/v2/${parts.join("/")}`, tag: full.slice(colon + 1) };
}

/** What Go's HTTP client says when the registry's name does not resolve (no network). */
function offline(method: string, url: string, host: string): string {
  return `${method} "${url}": dial tcp: lookup ${host}: no such host`;
}

function makeEntry(
  name: string,
  modifiedMs: number,
  like?: ModelEntry,
  capabilities?: string[],
): ModelEntry {
  const caps = like?.capabilities ?? capabilities;
  const embedOnly = caps ? !caps.includes("completion") : /embed/i.test(name);
  return {
    name,
    digest: fakeDigest(name),
    size: 1_000_000 + (fnv1a(name) % 900_000),
    modifiedMs,
    family: like?.family ?? (embedOnly ? "nomic-bert" : "llama"),
    parameterSize: like?.parameterSize ?? (embedOnly ? "137M" : "1.2M"),
    capabilities: caps ?? (embedOnly ? ["embedding"] : ["completion", "tools", "thinking"]),
  };
}

function details(m: ModelEntry) {
  return {
    parent_model: "",
    format: "gguf",
    family: m.family,
    families: [m.family],
    parameter_size: m.parameterSize,
    quantization_level: "F32",
  };
}

// ---------------------------------------------------------------------------------------------
// Scheduler: Ollama's server/sched.go with NUM_PARALLEL=1

class Canceled extends Error {
  constructor() {
    super("request canceled");
  }
}

class QueueFull extends Error {
  constructor() {
    super("server busy, please try again.  maximum pending requests exceeded");
  }
}

/** Resolves true after `ms`, or false as soon as `signal` aborts; leaves no timer behind. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (elapsed: boolean) => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      resolve(elapsed);
    };
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(true), ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true })
  );
}

/** The llama server's semaphore: one holder, FIFO waiters. */
class Slot {
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
interface RunnerOpts {
  numCtx: number;
  numBatch: number;
  numGpu: number;
  mainGpu: number;
  useMmap: boolean | null;
  numThread: number;
}

function runnerOpts(options: Record<string, unknown> | undefined): RunnerOpts {
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
function needsReload(have: RunnerOpts, want: RunnerOpts): boolean {
  const gpu = want.numGpu < 0 ? -1 : have.numGpu;
  return have.numCtx !== want.numCtx || have.numBatch !== want.numBatch ||
    gpu !== (want.numGpu < 0 ? -1 : want.numGpu) || have.mainGpu !== want.mainGpu ||
    have.useMmap !== want.useMmap || have.numThread !== want.numThread;
}

class Runner {
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

interface SchedulerConfig {
  loadMs: number;
  maxLoaded: number;
  keepAliveMs: number;
  maxQueue: number;
  log(kind: "load" | "unload", model: string): void;
}

class Scheduler {
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
      while (!this.#closed && this.#pending.length > 0) {
        const p = this.#pending[0];
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
    return list.find((r) => r.state === "ready" && r.refCount === 0) ?? list[0];
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

// ---------------------------------------------------------------------------------------------
// TCP front: the public port relays bytes to an internal Deno.serve, so that a fault or stop() can
// cut a client's connection at any moment (even before headers), as a crashing Ollama would.

class FrontConn {
  readonly closed = new AbortController();
  #killed = false;

  constructor(readonly client: Deno.TcpConn, readonly upstream: Deno.TcpConn) {}

  kill(): void {
    if (this.#killed) return;
    this.#killed = true;
    for (const c of [this.client, this.upstream]) {
      try {
        c.close();
      } catch {
        // already closed by the other side
      }
    }
    this.closed.abort();
  }
}

async function relay(from: Deno.Conn, to: Deno.Conn, fc: FrontConn): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  try {
    while (true) {
      const n = await from.read(buf);
      if (n === null) break;
      for (let off = 0; off < n;) off += await to.write(buf.subarray(off, n));
    }
  } catch {
    // a side went away; closing both below is all there is to do
  }
  fc.kill();
}

class Front {
  #listener: Deno.TcpListener | undefined;
  #accepting: Promise<void> | undefined;
  #stopped = true;
  #tasks = new Set<Promise<void>>();
  #byUpstreamPort = new Map<number, FrontConn>();
  #dead: number[] = [];
  #upstreamPort: number;

  constructor(upstreamPort: number) {
    this.#upstreamPort = upstreamPort;
  }

  listen(hostname: string, port: number): number {
    const listener = Deno.listen({ hostname, port, transport: "tcp" });
    this.#listener = listener;
    this.#stopped = false;
    this.#accepting = this.#accept(listener);
    return listener.addr.port;
  }

  /** The client connection behind the internal server's peer port. */
  conn(upstreamPort: number): FrontConn | undefined {
    return this.#byUpstreamPort.get(upstreamPort);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    try {
      this.#listener?.close();
    } catch {
      // already closed
    }
    this.#listener = undefined;
    await this.#accepting;
    for (const fc of this.#byUpstreamPort.values()) fc.kill();
    await Promise.all(this.#tasks);
  }

  async #accept(listener: Deno.TcpListener): Promise<void> {
    while (true) {
      let client: Deno.TcpConn;
      try {
        client = await listener.accept();
      } catch {
        return; // listener closed
      }
      const task = this.#serve(client);
      this.#tasks.add(task);
      void task.finally(() => this.#tasks.delete(task));
    }
  }

  async #serve(client: Deno.TcpConn): Promise<void> {
    let upstream: Deno.TcpConn;
    try {
      upstream = await Deno.connect({ hostname: "127.0.0.1", port: this.#upstreamPort });
    } catch {
      client.close();
      return;
    }
    const fc = new FrontConn(client, upstream);
    if (this.#stopped) return fc.kill();
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const key = upstream.localAddr.port;
    this.#byUpstreamPort.set(key, fc);
    await Promise.all([relay(client, upstream, fc), relay(upstream, client, fc)]);
    // The internal server may still be starting a request that came in just before the close; it
    // must find this (aborted) connection, so the entry stays until the port is reused or aged out.
    this.#dead.push(key);
    while (this.#dead.length > MAX_DEAD_CONNS) {
      const old = this.#dead.shift()!;
      if (this.#byUpstreamPort.get(old)?.closed.signal.aborted) this.#byUpstreamPort.delete(old);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Request decoding with Go's encoding/json error texts

type Field = [kind: "string" | "bool" | "number" | "object" | "array" | "any", goType: string];
type Shape = Record<string, Field>;

const CHAT: Shape = {
  model: ["string", "string"],
  messages: ["array", "[]api.Message"],
  tools: ["array", "api.Tools"],
  stream: ["bool", "bool"],
  options: ["object", "map[string]interface {}"],
  format: ["any", ""],
  think: ["any", ""],
  keep_alive: ["any", ""],
};
const GENERATE: Shape = {
  model: ["string", "string"],
  prompt: ["string", "string"],
  suffix: ["string", "string"],
  system: ["string", "string"],
  template: ["string", "string"],
  context: ["array", "[]int"],
  images: ["array", "[]api.ImageData"],
  stream: ["bool", "bool"],
  raw: ["bool", "bool"],
  options: ["object", "map[string]interface {}"],
  format: ["any", ""],
  think: ["any", ""],
  keep_alive: ["any", ""],
};
const EMBED: Shape = {
  model: ["string", "string"],
  input: ["any", ""],
  truncate: ["bool", "bool"],
  dimensions: ["number", "int"],
  options: ["object", "map[string]interface {}"],
  keep_alive: ["any", ""],
};
const EMBEDDINGS: Shape = {
  model: ["string", "string"],
  prompt: ["string", "string"],
  options: ["object", "map[string]interface {}"],
  keep_alive: ["any", ""],
};
const SHOW: Shape = {
  model: ["string", "string"],
  name: ["string", "string"],
  system: ["string", "string"],
  verbose: ["bool", "bool"],
  options: ["object", "map[string]interface {}"],
};
const NAMED: Shape = {
  model: ["string", "string"],
  name: ["string", "string"],
  stream: ["bool", "bool"],
};

function jsonKind(v: unknown): string {
  if (Array.isArray(v)) return "array";
  if (typeof v === "boolean") return "bool";
  return typeof v;
}

type Bound = { value: Record<string, unknown>; keepAliveMs: number | undefined } | {
  error: string;
};

/** gin's ShouldBindJSON into an Ollama request struct, with the messages Go would give. */
function bind(text: string, goType: string, shape: Shape): Bound {
  if (text.trim() === "") return { error: "missing request body" };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    const msg = String((e as Error).message);
    if (/end of JSON input|Unterminated/i.test(msg)) return { error: "unexpected EOF" };
    const at = /position (\d+)/.exec(msg);
    const ch = at ? text[Number(at[1])] : text.trim()[0];
    return { error: `invalid character '${ch}' looking for beginning of value` };
  }
  if (value === null) value = {};
  if (typeof value !== "object" || Array.isArray(value)) {
    return { error: `json: cannot unmarshal ${jsonKind(value)} into Go value of type ${goType}` };
  }
  const obj = value as Record<string, unknown>;
  const struct = goType.replace(/^api\./, "");
  for (const [key, [kind, go]] of Object.entries(shape)) {
    const v = obj[key];
    if (v === undefined || v === null || kind === "any") continue;
    const actual = jsonKind(v);
    const ok = kind === "object" ? actual === "object" : actual === kind;
    if (!ok) {
      return {
        error:
          `json: cannot unmarshal ${actual} into Go struct field ${struct}.${key} of type ${go}`,
      };
    }
  }
  const think = obj.think;
  if (
    "think" in shape && think !== undefined && think !== null && typeof think !== "boolean" &&
    !(typeof think === "string" && ["high", "medium", "low"].includes(think))
  ) {
    return {
      error: typeof think === "string"
        ? `invalid think value: "${think}" (must be "high", "medium", "low", true, or false)`
        : `think must be a boolean or string ("high", "medium", "low", true, or false)`,
    };
  }
  let keepAliveMs: number | undefined;
  if ("keep_alive" in shape && obj.keep_alive !== undefined && obj.keep_alive !== null) {
    try {
      keepAliveMs = parseKeepAlive(obj.keep_alive);
    } catch (e) {
      return { error: (e as Error).message };
    }
  }
  return { value: obj, keepAliveMs };
}

// ---------------------------------------------------------------------------------------------
// Host and Origin checks (allowedHostsMiddleware and gin-contrib/cors with Ollama's defaults)

function parseIPv4(s: string): number[] | undefined {
  const parts = s.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^(0|[1-9]\d{0,2})$/.test(p) || Number(p) > 255)) {
    return undefined;
  }
  return parts.map(Number);
}

function localIPv4([a, b]: number[]): boolean {
  return a === 127 || a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) ||
    (a === 0 && b === 0);
}

function allowedHost(hostHeader: string | null): boolean {
  if (!hostHeader) return true;
  let host = hostHeader.toLowerCase();
  const bracket = /^\[([^\]]+)\](?::\d*)?$/.exec(host);
  if (bracket) host = bracket[1];
  else if (host.split(":").length === 2) host = host.split(":")[0];
  const v4 = parseIPv4(host);
  if (v4) return localIPv4(v4) && (v4[0] !== 0 || host === "0.0.0.0");
  if (host.includes(":")) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(host);
    if (mapped) {
      const m = parseIPv4(mapped[1]);
      return m !== undefined && localIPv4(m);
    }
    return host === "::1" || host === "::" || /^f[cd][0-9a-f]{2}:/.test(host);
  }
  return host === "" || host === "localhost" || host.endsWith(".localhost") ||
    host.endsWith(".local") || host.endsWith(".internal");
}

const ORIGIN_PATTERNS: RegExp[] = [
  /^https?:\/\/(localhost|127\.0\.0\.1|0\.0\.0\.0)(:.*)?$/,
  /^(app|file|tauri|vscode-webview|vscode-file):\/\/.*$/,
  /^(chrome|safari|moz|ms-browser)-extension:\/\/.*$/,
];

function allowedOrigin(origin: string | null, host: string | null): boolean {
  if (origin === null || origin === "") return true;
  if (host && (origin === `http://${host}` || origin === `https://${host}`)) return true;
  const o = origin.toLowerCase();
  return ORIGIN_PATTERNS.some((p) => p.test(o));
}

// ---------------------------------------------------------------------------------------------
// Responses

function json(status: number, body: unknown, headers: HeadersInit = {}): Response {
  const h = new Headers(headers);
  if (!h.has("content-type")) h.set("content-type", JSON_TYPE);
  return new Response(JSON.stringify(body), { status, headers: h });
}

function text(status: number, body: string | null): Response {
  return new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}

const ns = (ms: number) => Math.max(1, Math.round(ms * 1e6));
const now = () => performance.timeOrigin + performance.now();

/** Go's time.Time in JSON (RFC 3339 with up to nine fractional digits, trailing zeros dropped) for
 * epoch milliseconds; the clock's sub-millisecond digits stand in for Go's nanoseconds. */
function goTime(ms: number): string {
  const sec = Math.floor(ms / 1000);
  const nanos = Math.min(999_999_999, Math.floor((ms - sec * 1000) * 1e6));
  const frac = nanos ? "." + String(nanos).padStart(9, "0").replace(/0+$/, "") : "";
  return `${new Date(sec * 1000).toISOString().slice(0, 19)}${frac}Z`;
}

/** The Go kind of each field of api.Options that FromMap checks; other keys are ignored. */
const OPTION_KINDS: Record<string, "integer" | "float32" | "boolean" | "array"> = {
  num_ctx: "integer",
  num_batch: "integer",
  num_gpu: "integer",
  main_gpu: "integer",
  use_mmap: "boolean",
  num_thread: "integer",
  num_keep: "integer",
  seed: "integer",
  num_predict: "integer",
  top_k: "integer",
  top_p: "float32",
  min_p: "float32",
  typical_p: "float32",
  repeat_last_n: "integer",
  temperature: "float32",
  repeat_penalty: "float32",
  presence_penalty: "float32",
  frequency_penalty: "float32",
  stop: "array",
};

/** api.Options.FromMap's complaint about the first mistyped option, which Ollama answers with a
 * 500 before loading anything (Go walks the map in random order, so with several it names any). */
function optionsError(options: Record<string, unknown> | undefined): string | undefined {
  for (const [key, v] of Object.entries(options ?? {})) {
    const kind = OPTION_KINDS[key];
    if (kind === undefined || v === null) continue;
    const ok = kind === "boolean"
      ? typeof v === "boolean"
      : kind === "array"
      ? Array.isArray(v)
      : typeof v === "number";
    if (!ok) return `option "${key}" must be of type ${kind}`;
    if (kind === "array" && (v as unknown[]).some((x) => typeof x !== "string")) {
      return `option "${key}" must be of an array of strings`;
    }
  }
  return undefined;
}

/** The runner's check of `format`, made once the model is loaded: null, "", "json" or an object. */
function formatError(format: unknown): string | undefined {
  if (format === undefined || format === null || format === "" || format === "json") return;
  if (typeof format === "object" && !Array.isArray(format)) return;
  // Go quotes the raw JSON with %q; JSON.stringify quotes the same way for printable text.
  const quoted = JSON.stringify(JSON.stringify(format));
  return `invalid format: ${quoted}; expected "json" or a valid JSON Schema object`;
}
const words = (s: unknown) => typeof s === "string" ? s.split(/\s+/).filter(Boolean).length : 0;

/** A deterministic unit-free vector for `input`; /api/embed normalises it, /api/embeddings not. */
function rawVector(model: string, input: string, dims: number): number[] {
  let x = fnv1a(`${model}\u0000${input}`) || 1;
  const out: number[] = [];
  for (let i = 0; i < dims; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.push((x / 0xffffffff) * 2 - 1);
  }
  return out;
}

function normalize(v: number[]): number[] {
  const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  return norm > 0 ? v.map((x) => x / norm) : v;
}

interface Fault {
  kind: "fail" | "stall" | "drop";
  remaining: number;
  status: number;
  error: string;
  afterChunks: number;
  path?: string;
}

/** What one request carries through the handlers. */
interface Ctx {
  req: Request;
  path: string;
  started: number;
  /** Aborts when the client's connection closes or the simulator closes. */
  signal: AbortSignal;
  conn: FrontConn | undefined;
  /** A stall/drop this request took; the generation consumes it, else the response does. */
  fault: Fault | undefined;
  body: Uint8Array<ArrayBuffer>;
}

interface Piece {
  thinking?: string;
  content?: string;
  toolCalls?: unknown[];
}

// ---------------------------------------------------------------------------------------------

interface Config {
  hostname: string;
  models: string[];
  loadMs: number;
  tokenMs: number;
  tokens: number;
  maxLoaded: number;
  keepAliveMs: number;
  version: string;
  dimensions: number;
  maxQueue: number;
  /** Lower-cased full name → capabilities. */
  capabilities: Map<string, string[]>;
  repeatLimit: boolean;
  online: boolean;
}

/**
 * A running simulated Ollama. Start with {@link OllamaSim.start}; always {@link OllamaSim.close}.
 * `events`, `requests` and the scheduler state survive stop() and restart().
 */
export class OllamaSim {
  readonly url: string;
  readonly port: number;
  readonly events: SimEvent[] = [];
  readonly requests: SimRequest[] = [];

  #cfg: Config;
  #catalog = new Map<string, ModelEntry>();
  #blobs = new Set<string>();
  #sched: Scheduler;
  #faults: Fault[] = [];
  #server: Deno.HttpServer<Deno.NetAddr>;
  #front: Front;
  #closing = new AbortController();
  #listening = true;
  #closed = false;
  #active = new Map<string, number>();
  #activeAll = 0;
  #max = new Map<string, number>();
  #maxAll = 0;

  private constructor(
    cfg: Config,
    server: Deno.HttpServer<Deno.NetAddr>,
    front: Front,
    port: number,
  ) {
    this.#cfg = cfg;
    this.#server = server;
    this.#front = front;
    this.port = port;
    const shown = ["0.0.0.0", "::", ""].includes(cfg.hostname) ? "127.0.0.1" : cfg.hostname;
    this.url = `http://${shown.includes(":") ? `[${shown}]` : shown}:${port}`;
    const born = now();
    cfg.models.forEach((m, i) => this.#add(fullName(m), born - i * 1000));
    this.#sched = new Scheduler({
      loadMs: cfg.loadMs,
      maxLoaded: cfg.maxLoaded,
      keepAliveMs: cfg.keepAliveMs,
      maxQueue: cfg.maxQueue,
      log: (kind, model) => this.#log(kind, model),
    });
  }

  /** Starts listening; resolves once the port accepts connections. */
  static async start(opts: SimOptions = {}): Promise<OllamaSim> {
    const cfg = OllamaSim.#config(opts);
    const box: { sim?: OllamaSim } = {};
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      onListen() {},
      onError(error) {
        if (error !== DROPPED) console.error("ollama_sim: handler failed:", error);
        return json(500, { error: String(error) });
      },
    }, (req, info) => box.sim!.#handle(req, info));
    const front = new Front(server.addr.port);
    let port: number;
    try {
      port = front.listen(cfg.hostname, opts.port ?? 0);
    } catch (e) {
      await server.shutdown();
      throw e;
    }
    box.sim = new OllamaSim(cfg, server, front, port);
    return box.sim;
  }

  static #config(opts: SimOptions): Config {
    const nonNegative = (name: string, v: number | undefined, fallback: number) => {
      const n = v ?? fallback;
      if (!Number.isFinite(n) || n < 0) {
        throw new RangeError(`Cannot start the Ollama simulator: ${name} ${n} is not >= 0`);
      }
      return n;
    };
    const keepAlive = opts.defaultKeepAlive ?? "5m";
    let keepAliveMs: number;
    try {
      keepAliveMs = parseKeepAlive(keepAlive);
    } catch (e) {
      throw new RangeError(
        `Cannot start the Ollama simulator: defaultKeepAlive ${
          JSON.stringify(keepAlive)
        } is invalid`,
        { cause: e },
      );
    }
    return {
      hostname: opts.hostname ?? "127.0.0.1",
      models: opts.models ?? DEFAULT_MODELS,
      loadMs: nonNegative("loadMs", opts.loadMs, 20),
      tokenMs: nonNegative("tokenMs", opts.tokenMs, 2),
      tokens: Math.max(1, Math.trunc(nonNegative("tokens", opts.tokens, 8))),
      maxLoaded: Math.max(1, Math.trunc(nonNegative("maxLoaded", opts.maxLoaded, 2))),
      keepAliveMs,
      version: opts.version ?? "0.11.4",
      dimensions: Math.max(1, Math.trunc(nonNegative("dimensions", opts.dimensions, 8))),
      maxQueue: Math.max(1, Math.trunc(nonNegative("maxQueue", opts.maxQueue, 512))),
      capabilities: new Map(
        Object.entries(opts.capabilities ?? {}).map(([k, v]) => [fullName(k).toLowerCase(), v]),
      ),
      repeatLimit: opts.repeatLimit ?? false,
      online: opts.online ?? false,
    };
  }

  /** Full names of models in the order they began loading (a reload counts again). */
  loads(): string[] {
    return this.events.filter((e) => e.kind === "load").map((e) => e.model);
  }

  /** Full names of models in the order they left memory. */
  unloads(): string[] {
    return this.events.filter((e) => e.kind === "unload").map((e) => e.model);
  }

  /** Models in memory now, loading ones included (as /api/ps lists them), in load order. */
  resident(): string[] {
    return [...this.#sched.loaded.keys()];
  }

  /** Most chat/generate generations seen running at once, for one model or over all. */
  maxConcurrent(model?: string): number {
    if (model === undefined) return this.#maxAll;
    return this.#max.get(this.#entry(model)?.name ?? fullName(model)) ?? 0;
  }

  /** The next n chat/generate requests (or requests to `opts.path`) get `status` {"error"}. */
  failNext(n: number, status: number, error: string, opts: { path?: string } = {}): void {
    this.#faults.push({ kind: "fail", remaining: n, status, error, afterChunks: 0, ...opts });
  }

  /** The next n chat/generate responses (or responses on `opts.path`) stop after `afterChunks`
   * NDJSON chunks (0: before the headers) and keep the connection open and the model busy until
   * the client leaves. A non-streamed or early answer is never sent; an answer with fewer chunks
   * than afterChunks completes normally. */
  stallNext(n: number, opts: { afterChunks?: number; path?: string } = {}): void {
    this.#faults.push({
      kind: "stall",
      remaining: n,
      status: 0,
      error: "",
      afterChunks: 0,
      ...opts,
    });
  }

  /** Like stallNext, but the connection is closed instead (before any byte when afterChunks is 0;
   * else after that many chunks, with the chunked body left unterminated). */
  dropNext(n: number, opts: { afterChunks?: number; path?: string } = {}): void {
    this.#faults.push({
      kind: "drop",
      remaining: n,
      status: 0,
      error: "",
      afterChunks: 0,
      ...opts,
    });
  }

  /** Stops listening and cuts every open connection, as a crash would; the port is free after. */
  async stop(): Promise<void> {
    if (!this.#listening) return;
    this.#listening = false;
    await this.#front.stop();
  }

  /** Listens again on the same port. A restarted Ollama has nothing loaded, so residency is
   * forgotten (with unload events) unless keepResidency is set. */
  async restart(opts: { keepResidency?: boolean } = {}): Promise<void> {
    if (this.#closed) throw new Error("Cannot restart the Ollama simulator: it is closed");
    await this.stop();
    if (!opts.keepResidency) this.#sched.forget();
    for (let attempt = 0;; attempt++) {
      try {
        this.#front.listen(this.#cfg.hostname, this.port);
        break;
      } catch (e) {
        if (!(e instanceof Deno.errors.AddrInUse) || attempt >= 50) throw e;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    this.#listening = true;
  }

  /** Stops for good: connections cut, timers cleared, the internal server shut down. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort();
    await this.stop();
    this.#sched.close();
    await this.#server.shutdown();
  }

  // -------------------------------------------------------------------------------------------

  #log(kind: SimEvent["kind"], model: string, path?: string): void {
    this.events.push(
      path === undefined ? { at: now(), kind, model } : { at: now(), kind, model, path },
    );
  }

  #entry(name: string): ModelEntry | undefined {
    return this.#catalog.get(fullName(name).toLowerCase());
  }

  /** Puts a model on "disk": a copy of `like`, else with the capabilities configured for it. */
  #add(name: string, modifiedMs: number, like?: ModelEntry): ModelEntry {
    const e = makeEntry(name, modifiedMs, like, this.#cfg.capabilities.get(name.toLowerCase()));
    this.#catalog.set(e.name.toLowerCase(), e);
    return e;
  }

  #takeFault(kind: Fault["kind"], path: string): Fault | undefined {
    const f = this.#faults.find((f) =>
      f.kind === kind && f.remaining > 0 &&
      (f.path ? f.path === path : INFERENCE_PATHS.includes(path))
    );
    if (!f) return undefined;
    f.remaining--;
    if (f.remaining <= 0) this.#faults = this.#faults.filter((x) => x !== f);
    return f;
  }

  async #handle(req: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Promise<Response> {
    const url = new URL(req.url);
    const conn = this.#front.conn(info.remoteAddr.port);
    // Only the front knows when the client went away; req.signal is a fallback for direct calls.
    const signal = AbortSignal.any([conn?.closed.signal ?? req.signal, this.#closing.signal]);
    let body = new Uint8Array(0);
    if (req.body) {
      try {
        body = new Uint8Array(await req.arrayBuffer());
      } catch {
        return json(400, { error: "unexpected EOF" });
      }
    }
    this.requests.push({
      method: req.method,
      path: url.pathname,
      headers: req.headers,
      body: OllamaSim.#loggedBody(url.pathname, body),
    });
    const host = req.headers.get("host");
    const origin = req.headers.get("origin");
    if (!allowedOrigin(origin, host)) return new Response(null, { status: 403 });
    const loopback = /^(127\.|localhost$|::1$)/.test(this.#cfg.hostname);
    if (loopback && !allowedHost(host)) return new Response(null, { status: 403 });
    const cors: Record<string, string> = origin
      ? { "access-control-allow-origin": origin, vary: "Origin" }
      : {};
    if (req.method === "OPTIONS") return new Response(null, { status: 204, headers: cors });

    const fail = this.#takeFault("fail", url.pathname);
    if (fail) return json(fail.status, { error: fail.error });
    const ctx: Ctx = {
      req,
      path: url.pathname,
      started: performance.now(),
      signal,
      conn,
      fault: this.#takeFault("stall", url.pathname) ?? this.#takeFault("drop", url.pathname),
      body,
    };
    const res = await this.#route(ctx);
    for (const [k, v] of Object.entries(cors)) res.headers.set(k, v);
    const fault = ctx.fault;
    if (fault) {
      await res.body?.cancel();
      return await this.#inflict(fault, ctx);
    }
    return res;
  }

  static #loggedBody(path: string, body: Uint8Array): unknown {
    if (body.length === 0) return undefined;
    if (path.startsWith("/api/blobs/")) return body;
    const t = new TextDecoder().decode(body);
    try {
      return JSON.parse(t);
    } catch {
      return t;
    }
  }

  /** A stall or drop at the point where a response would go out. */
  async #inflict(fault: Fault, ctx: Ctx): Promise<Response> {
    ctx.fault = undefined;
    if (fault.kind === "stall") await aborted(ctx.signal);
    else if (ctx.conn) ctx.conn.kill();
    else return new Response(new ReadableStream({ start: (c) => c.error(DROPPED) }));
    return new Response(null, { status: 499 }); // nobody is there to read it
  }

  #route(ctx: Ctx): Promise<Response> | Response {
    const { req, path } = ctx;
    const m = req.method;
    const get = m === "GET" || m === "HEAD";
    const notAllowed = () => text(405, "405 method not allowed");
    switch (path) {
      case "/":
        return get ? text(200, m === "HEAD" ? null : "Ollama is running") : notAllowed();
      case "/api/version":
        return get ? json(200, { version: this.#cfg.version }) : notAllowed();
      case "/api/tags":
        return get ? this.#tags() : notAllowed();
      case "/api/ps":
        return m === "GET" ? this.#ps() : notAllowed();
      case "/api/show":
        return m === "POST" ? this.#show(ctx) : notAllowed();
      case "/api/chat":
        return m === "POST" ? this.#infer("chat", ctx) : notAllowed();
      case "/api/generate":
        return m === "POST" ? this.#infer("generate", ctx) : notAllowed();
      case "/api/embed":
        return m === "POST" ? this.#embed(ctx, false) : notAllowed();
      case "/api/embeddings":
        return m === "POST" ? this.#embed(ctx, true) : notAllowed();
      case "/api/pull":
      case "/api/push":
      case "/api/create":
        return m === "POST" ? this.#manage(ctx) : notAllowed();
      case "/api/copy":
        return m === "POST" ? this.#copy(ctx) : notAllowed();
      case "/api/delete":
        return m === "DELETE" ? this.#delete(ctx) : notAllowed();
    }
    if (/^\/api\/blobs\/[^/]+$/.test(path)) {
      return m === "POST" || m === "HEAD" ? this.#blob(ctx) : notAllowed();
    }
    return text(404, "404 page not found");
  }

  #tags(): Response {
    const models = [...this.#catalog.values()]
      // Ollama sorts by whole seconds and breaks ties by map order (at random); the exact time is one
      // of its possible orders and keeps a just-created model first.
      .sort((a, b) => b.modifiedMs - a.modifiedMs)
      .map((e) => ({
        name: e.name,
        model: e.name,
        modified_at: goTime(e.modifiedMs),
        size: e.size,
        digest: e.digest,
        details: details(e),
      }));
    return json(200, { models });
  }

  #ps(): Response {
    const models = this.#sched.ps().map(({ runner, expiresAt }) => {
      const e = this.#entry(runner.name) ?? makeEntry(runner.name, now());
      return {
        name: e.name,
        model: e.name,
        size: e.size,
        digest: e.digest,
        details: details(e),
        expires_at: goTime(expiresAt),
        // Ollama's CPU-only build (the real tier's) keeps nothing in VRAM.
        size_vram: 0,
        // num_ctx / OLLAMA_NUM_PARALLEL (1), not capped at the model's trained context.
        context_length: runner.opts.numCtx,
      };
    });
    return json(200, { models });
  }

  #show(ctx: Ctx): Response {
    const b = bind(new TextDecoder().decode(ctx.body), "api.ShowRequest", SHOW);
    if ("error" in b) return json(400, { error: b.error });
    const name = String(b.value.model || b.value.name || "");
    if (!name) return json(400, { error: "model is required" });
    const e = this.#entry(name);
    if (!e) return json(404, { error: `model '${name}' not found` });
    const embedOnly = !e.capabilities.includes("completion");
    const arch = e.family;
    const template = embedOnly
      ? "{{ .Prompt }}"
      : "{{ if .System }}{{ .System }}\n{{ end }}{{ if .Tools }}{{ .Tools }}\n{{ end }}" +
        "{{ if .Think }}<think>{{ end }}{{ .Prompt }}";
    return json(200, {
      modelfile:
        `# Modelfile generated by "ollama show"\n# To build a new Modelfile based on this, ` +
        `replace FROM with:\n# FROM ${e.name}\n\nFROM /root/.ollama/models/blobs/sha256-${e.digest}\n` +
        `TEMPLATE """${template}"""\n`,
      template,
      details: details(e),
      model_info: {
        "general.architecture": arch,
        "general.parameter_count": e.size,
        [`${arch}.context_length`]: 4096,
        [`${arch}.embedding_length`]: this.#cfg.dimensions,
        [`${arch}.block_count`]: 1,
      },
      capabilities: e.capabilities,
      modified_at: goTime(e.modifiedMs),
    });
  }

  // --- chat and generate ---------------------------------------------------------------------

  async #infer(kind: "chat" | "generate", ctx: Ctx): Promise<Response> {
    const b = bind(
      new TextDecoder().decode(ctx.body),
      kind === "chat" ? "api.ChatRequest" : "api.GenerateRequest",
      kind === "chat" ? CHAT : GENERATE,
    );
    if ("error" in b) return json(400, { error: b.error });
    const r = b.value;
    const model = typeof r.model === "string" ? r.model : "";
    const entry = model ? this.#entry(model) : undefined;
    if (model) this.#log("request", entry?.name ?? model, ctx.path);
    const messages = (r.messages ?? []) as Record<string, unknown>[];
    const prompt = typeof r.prompt === "string" ? r.prompt : "";
    const empty = kind === "chat" ? messages.length === 0 : prompt === "";
    const created = () => goTime(now());
    const doneOnly = (reason: string) =>
      json(
        200,
        kind === "chat"
          ? {
            model,
            created_at: created(),
            message: { role: "assistant", content: "" },
            done_reason: reason,
            done: true,
          }
          : { model, created_at: created(), response: "", done: true, done_reason: reason },
      );
    const unload = empty && b.keepAliveMs !== undefined && Math.trunc(b.keepAliveMs / 1000) === 0;

    // The checks run in Ollama 0.11.4's order, each route its own. Both look a model up by name
    // first ("model 'x' not found"), except chat outside an unload, which asks the scheduler and
    // gets "model "x" not found, try pulling it first" (and "model is required" for no name).
    if (!entry && (kind === "generate" || unload)) {
      return json(404, { error: `model '${model}' not found` });
    }
    if (unload) {
      await this.#sched.expire(entry!.name);
      return doneOnly("unload");
    }
    if (!model) return json(400, { error: "model is required" });
    if (!entry) {
      return json(404, { error: `model ${JSON.stringify(model)} not found, try pulling it first` });
    }
    if (
      kind === "generate" && r.raw === true && (r.template || r.system || (r.context as [])?.length)
    ) {
      return json(400, { error: "raw mode does not support template, system, or context" });
    }
    // Levels are for gpt-oss only; generate refuses them at once, chat once the model is loaded.
    const thinkLevel = typeof r.think === "string"
      ? `think value ${JSON.stringify(r.think)} is not supported for this model`
      : undefined;
    if (kind === "generate" && thinkLevel) return json(400, { error: thinkLevel });
    const think = r.think !== undefined && r.think !== null && r.think !== false;
    const tools = Array.isArray(r.tools) ? r.tools : [];
    const wanted = [
      "completion",
      ...(kind === "chat" && tools.length > 0 ? ["tools"] : []),
      ...(kind === "generate" && typeof r.suffix === "string" && r.suffix !== "" ? ["insert"] : []),
      ...(think ? ["thinking"] : []),
    ];
    const missing = wanted.filter((c) => !entry.capabilities.includes(c));
    if (missing.includes("completion")) {
      return json(400, { error: `${JSON.stringify(model)} does not support ${kind}` });
    }
    if (missing.length > 0) {
      // Go's errors.Join puts a newline between the missing capabilities.
      const error = `${longName(entry.name)} does not support ${missing.join("\n")}`;
      return json(400, { error });
    }
    const options = (r.options ?? undefined) as Record<string, unknown> | undefined;
    const badOption = optionsError(options);
    if (badOption) return json(500, { error: badOption });

    let runner: Runner;
    try {
      runner = await this.#sched.acquire(
        entry.name,
        runnerOpts(options),
        b.keepAliveMs,
        ctx.signal,
      );
    } catch (e) {
      if (e instanceof QueueFull) return json(503, { error: e.message });
      return json(499, { error: "request canceled" });
    }
    const loadedAt = performance.now();
    if (empty) {
      this.#sched.release(runner);
      return doneOnly("load");
    }
    if (thinkLevel) {
      this.#sched.release(runner);
      return json(400, { error: thinkLevel });
    }
    // The runner rejects a bad format before generating: a 500, or an error line when streaming.
    const badFormat = formatError(r.format);
    if (badFormat) {
      this.#sched.release(runner);
      if (r.stream === false) return json(500, { error: badFormat });
      return new Response(JSON.stringify({ error: badFormat }) + "\n", {
        status: 200,
        headers: { "content-type": "application/x-ndjson" },
      });
    }
    try {
      await runner.slot.acquire(ctx.signal);
    } catch {
      this.#sched.release(runner);
      return json(499, { error: "request canceled" });
    }

    // The model's slot is ours: generate.
    const generation = new AbortController();
    const signal = AbortSignal.any([ctx.signal, generation.signal]);
    this.#begin(entry.name, ctx.path);
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      generation.abort();
      this.#end(entry.name, ctx.path);
      runner.slot.release();
      this.#sched.release(runner);
    };

    const numPredict = typeof options?.num_predict === "number"
      ? Math.trunc(options.num_predict)
      : 0;
    const n = numPredict > 0 ? numPredict : this.#cfg.tokens;
    const doneReason = numPredict > 0 ? "length" : "stop";
    const pieces = this.#pieces(kind, r, n, think);
    const promptTokens = Math.max(
      1,
      kind === "chat"
        ? messages.reduce((s, msg) => s + words(msg.content) + 1, 0)
        : words(r.system) + words(prompt),
    );
    const tokenMs = this.#cfg.tokenMs;
    const started = ctx.started;
    const genStarted = performance.now();
    let firstAt = genStarted;

    const chunk = (p: Piece): Record<string, unknown> => {
      if (kind === "generate") {
        const c: Record<string, unknown> = {
          model,
          created_at: created(),
          response: p.content ?? "",
        };
        if (p.thinking) c.thinking = p.thinking;
        c.done = false;
        return c;
      }
      const message: Record<string, unknown> = { role: "assistant", content: p.content ?? "" };
      if (p.thinking) message.thinking = p.thinking;
      if (p.toolCalls) message.tool_calls = p.toolCalls;
      return { model, created_at: created(), message, done: false };
    };
    const final = (): Record<string, unknown> => {
      const t = performance.now();
      const metrics = {
        total_duration: ns(t - started),
        load_duration: ns(loadedAt - started),
        prompt_eval_count: promptTokens,
        prompt_eval_duration: ns(firstAt - genStarted),
        eval_count: pieces.length,
        eval_duration: ns(t - firstAt),
      };
      if (kind === "chat") {
        return {
          model,
          created_at: created(),
          message: { role: "assistant", content: "" },
          done_reason: doneReason,
          done: true,
          ...metrics,
        };
      }
      const seed = fnv1a(prompt);
      const context = Array.from(
        { length: promptTokens + pieces.length },
        (_, i) => (seed + i * 7919) % 32000,
      );
      return {
        model,
        created_at: created(),
        response: "",
        done: true,
        done_reason: doneReason,
        context,
        ...metrics,
      };
    };
    // One chunk per tokenMs; ends early (without the final chunk) when the client leaves, or when
    // Ollama's loop guard fires (llm/server.go: the same trimmed token more than 30 times in a row
    // ends the completion quietly, so the answer simply stops).
    let looped = false;
    async function* produce(): AsyncGenerator<Record<string, unknown>> {
      let lastToken = "";
      let repeats = 0;
      for (const [i, p] of pieces.entries()) {
        // With no delay there is no timer either: even setTimeout(0) costs about a millisecond.
        if (tokenMs > 0 ? !(await sleep(tokenMs, signal)) : signal.aborted) return;
        const token = (p.thinking ?? p.content ?? "").trim();
        if (token === lastToken) repeats++;
        else [lastToken, repeats] = [token, 0];
        if (repeats > 30) {
          looped = true;
          return;
        }
        if (i === 0) firstAt = performance.now();
        yield chunk(p);
      }
      yield final();
    }

    const fault = ctx.fault;
    ctx.fault = undefined;
    const it = produce();
    const stream = r.stream !== false;

    if (!stream) {
      const got: Record<string, unknown>[] = [];
      if (fault?.afterChunks === 0) return await this.#inflictDuring(fault, ctx, finish);
      for await (const c of it) {
        got.push(c);
        if (fault && got.length === fault.afterChunks) {
          return await this.#inflictDuring(fault, ctx, finish);
        }
      }
      finish();
      const last = got.at(-1);
      if (!last || (last.done !== true && !looped)) return json(499, { error: "request canceled" });
      return json(200, OllamaSim.#merge(kind, got));
    }

    if (fault?.afterChunks === 0) return await this.#inflictDuring(fault, ctx, finish);
    const first = await it.next();
    if (first.done) {
      finish();
      return json(499, { error: "request canceled" });
    }
    const encoder = new TextEncoder();
    const line = (c: Record<string, unknown>) => encoder.encode(JSON.stringify(c) + "\n");
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(line(first.value));
        sent = 1;
      },
      async pull(c) {
        if (fault && sent === fault.afterChunks) {
          // A drop errors the body: Deno flushes the chunks already sent, then closes the socket.
          if (fault.kind === "stall") await aborted(ctx.signal);
          finish();
          c.error(DROPPED);
          return;
        }
        const next = await it.next();
        if (next.done) {
          finish();
          if (looped) c.close(); // a complete HTTP response that lacks its done:true line
          else c.error(DROPPED); // the client left mid-generation
          return;
        }
        if (next.value.done === true) finish(); // so a reader of the last chunk sees the model free
        try {
          c.enqueue(line(next.value));
          sent++;
          if (next.value.done === true) c.close();
        } catch {
          // cancelled meanwhile: the client is gone
        }
      },
      cancel() {
        finish();
      },
    }, { highWaterMark: 0 });
    return new Response(body, { status: 200, headers: { "content-type": "application/x-ndjson" } });
  }

  async #inflictDuring(fault: Fault, ctx: Ctx, finish: () => void): Promise<Response> {
    const res = await this.#inflict(fault, ctx);
    finish();
    return res;
  }

  #pieces(
    kind: "chat" | "generate",
    r: Record<string, unknown>,
    n: number,
    think: boolean,
  ): Piece[] {
    const pieces: Piece[] = think ? [{ thinking: "t1" }, { thinking: " t2" }] : [];
    const messages = (r.messages ?? []) as Record<string, unknown>[];
    const tools = Array.isArray(r.tools) ? r.tools as Record<string, unknown>[] : [];
    if (kind === "chat" && tools.length > 0 && messages.at(-1)?.role !== "tool") {
      const fn = tools[0]?.function as Record<string, unknown> | undefined;
      const name = typeof fn?.name === "string" ? fn.name : "tool";
      pieces.push({ content: "", toolCalls: [{ function: { name, arguments: {} } }] });
      return pieces;
    }
    // A looping model repeats its first word, so that Ollama's repeat limit can cut it short.
    const ws = this.#cfg.repeatLimit ? Array<string>(n).fill("w1") : simWords(n).split(" ");
    const formatted = r.format !== undefined && r.format !== null && r.format !== "";
    const content = ws.map((w, i) => (i ? " " : formatted ? '{"text":"' : "") + w);
    if (formatted) content[content.length - 1] += '"}';
    for (const c of content) pieces.push({ content: c });
    return pieces;
  }

  /** What stream:false answers: the last chunk (the done:true one, unless the answer was cut short)
   * holding everything the chunks carried. */
  static #merge(
    kind: "chat" | "generate",
    chunks: Record<string, unknown>[],
  ): Record<string, unknown> {
    const last = { ...chunks.at(-1)! };
    if (kind === "generate") {
      const thinking = chunks.map((c) => c.thinking ?? "").join("");
      const merged: Record<string, unknown> = {
        model: last.model,
        created_at: last.created_at,
        response: chunks.map((c) => c.response).join(""),
      };
      if (thinking) merged.thinking = thinking;
      return { ...merged, ...last, ...merged };
    }
    const msgs = chunks.map((c) => c.message as Record<string, unknown>);
    const message: Record<string, unknown> = {
      role: "assistant",
      content: msgs.map((m) => m.content).join(""),
    };
    const thinking = msgs.map((m) => m.thinking ?? "").join("");
    if (thinking) message.thinking = thinking;
    const calls = msgs.flatMap((m) => (m.tool_calls ?? []) as unknown[]);
    if (calls.length) message.tool_calls = calls;
    return { ...last, message };
  }

  #begin(model: string, path: string): void {
    this.#log("start", model, path);
    if (!INFERENCE_PATHS.includes(path)) return;
    const n = (this.#active.get(model) ?? 0) + 1;
    this.#active.set(model, n);
    this.#max.set(model, Math.max(this.#max.get(model) ?? 0, n));
    this.#activeAll++;
    this.#maxAll = Math.max(this.#maxAll, this.#activeAll);
  }

  #end(model: string, path: string): void {
    this.#log("end", model, path);
    if (!INFERENCE_PATHS.includes(path)) return;
    this.#active.set(model, (this.#active.get(model) ?? 1) - 1);
    this.#activeAll--;
  }

  // --- embeddings --------------------------------------------------------------------------

  async #embed(ctx: Ctx, legacy: boolean): Promise<Response> {
    const b = bind(
      new TextDecoder().decode(ctx.body),
      legacy ? "api.EmbeddingRequest" : "api.EmbedRequest",
      legacy ? EMBEDDINGS : EMBED,
    );
    if ("error" in b) return json(400, { error: b.error });
    const r = b.value;
    let inputs: string[] = [];
    if (legacy) {
      if (typeof r.prompt === "string" && r.prompt !== "") inputs = [r.prompt];
    } else if (typeof r.input === "string") {
      if (r.input !== "") inputs = [r.input];
    } else if (Array.isArray(r.input)) {
      if (r.input.some((v) => typeof v !== "string")) {
        return json(400, { error: "invalid input type" });
      }
      inputs = r.input as string[];
    } else if (r.input !== undefined && r.input !== null) {
      return json(400, { error: "invalid input type" });
    }
    const model = typeof r.model === "string" ? r.model : "";
    // /api/embeddings checks the name; /api/embed asks the scheduler for "" and finds nothing.
    if (!model && legacy) return json(400, { error: "model is required" });
    const entry = model ? this.#entry(model) : undefined;
    if (model) this.#log("request", entry?.name ?? model, ctx.path);
    if (!entry) {
      return json(404, { error: `model ${JSON.stringify(model)} not found, try pulling it first` });
    }
    const options = (r.options ?? undefined) as Record<string, unknown> | undefined;
    const badOption = optionsError(options);
    if (badOption) return json(500, { error: badOption });
    let runner: Runner;
    try {
      runner = await this.#sched.acquire(
        entry.name,
        runnerOpts(options),
        b.keepAliveMs,
        ctx.signal,
      );
    } catch (e) {
      if (e instanceof QueueFull) return json(503, { error: e.message });
      return json(499, { error: "request canceled" });
    }
    const loadedAt = performance.now();
    if (inputs.length === 0) {
      this.#sched.release(runner);
      return json(200, legacy ? { embedding: [] } : { model, embeddings: [] });
    }
    try {
      await runner.slot.acquire(ctx.signal);
    } catch {
      this.#sched.release(runner);
      return json(499, { error: "request canceled" });
    }
    this.#begin(entry.name, ctx.path);
    const ok = this.#cfg.tokenMs > 0
      ? await sleep(this.#cfg.tokenMs, ctx.signal)
      : !ctx.signal.aborted;
    this.#end(entry.name, ctx.path);
    runner.slot.release();
    this.#sched.release(runner);
    if (!ok) return json(499, { error: "request canceled" });
    const vectors = inputs.map((t) => rawVector(entry.name, t, this.#cfg.dimensions));
    if (legacy) return json(200, { embedding: vectors[0] });
    const dims = typeof r.dimensions === "number" && r.dimensions > 0
      ? Math.trunc(r.dimensions)
      : 0;
    return json(200, {
      model,
      embeddings: vectors.map((v) => normalize(dims ? v.slice(0, dims) : v)),
      total_duration: ns(performance.now() - ctx.started),
      load_duration: ns(loadedAt - ctx.started),
      prompt_eval_count: inputs.reduce((s, t) => s + Math.max(1, words(t)), 0),
    });
  }

  // --- model management --------------------------------------------------------------------

  /** pull, push and create: progress lines then success; pull and create add the model. */
  #manage(ctx: Ctx): Response {
    const b = bind(new TextDecoder().decode(ctx.body), "api.PullRequest", NAMED);
    if ("error" in b) return json(400, { error: b.error });
    const r = b.value;
    const name = String(r.model || r.name || "");
    if (!name) {
      return json(400, {
        error: ctx.path === "/api/push" ? "model is required" : "invalid model name",
      });
    }
    const full = fullName(name);
    const existing = this.#entry(full);
    const registry = registryOf(full);
    let statuses: Record<string, unknown>[];
    if (ctx.path === "/api/push") {
      if (!existing) {
        statuses = [{ status: "retrieving manifest" }, { error: `model "${name}" not found` }];
      } else if (!this.#cfg.online) {
        const blob = `${registry.repo}/blobs/sha256:${existing.digest}`;
        statuses = [
          { status: "retrieving manifest" },
          { error: offline("Head", blob, registry.host) },
        ];
      } else {
        statuses = [
          { status: "retrieving manifest" },
          {
            status: `pushing ${existing.digest.slice(0, 12)}`,
            digest: `sha256:${existing.digest}`,
            total: existing.size,
            completed: existing.size,
          },
          { status: "pushing manifest" },
          { status: "success" },
        ];
      }
    } else {
      const fromName = typeof r.from === "string" && r.from !== "" ? r.from : undefined;
      const from = fromName ? this.#entry(fromName) : undefined;
      if (fromName && !from) {
        statuses = [{ error: `model "${fromName}" not found` }];
      } else if (ctx.path === "/api/pull" && !this.#cfg.online) {
        // Even a model on disk is pulled again from its manifest, which needs the registry.
        const manifest = `${registry.repo}/manifests/${registry.tag}`;
        statuses = [
          { status: "pulling manifest" },
          { error: `pull model manifest: ${offline("Get", manifest, registry.host)}` },
        ];
      } else {
        const e = this.#add(existing?.name ?? full, now(), from ?? existing);
        statuses = ctx.path === "/api/pull"
          ? [
            { status: "pulling manifest" },
            {
              status: `pulling ${e.digest.slice(0, 12)}`,
              digest: `sha256:${e.digest}`,
              total: e.size,
              completed: e.size,
            },
            { status: "verifying sha256 digest" },
            { status: "writing manifest" },
            { status: "success" },
          ]
          : [
            { status: `using existing layer sha256:${e.digest}` },
            { status: "writing manifest" },
            { status: "success" },
          ];
      }
    }
    if (r.stream === false) {
      // waitForStream: the last status, or the error as a 500; its content type has no charset.
      const last = statuses.at(-1)!;
      return json("error" in last ? 500 : 200, last, { "content-type": "application/json" });
    }
    return new Response(statuses.map((s) => JSON.stringify(s) + "\n").join(""), {
      headers: { "content-type": "application/x-ndjson" },
    });
  }

  #copy(ctx: Ctx): Response {
    const b = bind(new TextDecoder().decode(ctx.body), "api.CopyRequest", {
      source: ["string", "string"],
      destination: ["string", "string"],
    });
    if ("error" in b) return json(400, { error: b.error });
    const source = String(b.value.source ?? "");
    const destination = String(b.value.destination ?? "");
    if (!source) return json(400, { error: `source "" is invalid` });
    if (!destination) return json(400, { error: `destination "" is invalid` });
    const from = this.#entry(source);
    if (!from) return json(404, { error: `model "${source}" not found` });
    this.#add(fullName(destination), now(), from);
    return new Response(null, { status: 200 });
  }

  #delete(ctx: Ctx): Response {
    const b = bind(new TextDecoder().decode(ctx.body), "api.DeleteRequest", NAMED);
    if ("error" in b) return json(400, { error: b.error });
    const name = String(b.value.model || b.value.name || "");
    if (!name) return json(400, { error: `name "" is invalid` });
    const e = this.#entry(name);
    if (!e) return json(404, { error: `model '${name}' not found` });
    this.#catalog.delete(e.name.toLowerCase());
    return new Response(null, { status: 200 });
  }

  async #blob(ctx: Ctx): Promise<Response> {
    const digest = decodeURIComponent(ctx.path.slice("/api/blobs/".length));
    const m = /^sha256[:-]([0-9a-fA-F]{64})$/.exec(digest);
    if (!m) return json(400, { error: "invalid digest format" });
    const hex = m[1].toLowerCase();
    if (ctx.req.method === "HEAD") {
      return this.#blobs.has(hex)
        ? new Response(null, { status: 200 })
        : json(404, { error: `blob "${digest}" not found` });
    }
    if (this.#blobs.has(hex)) return new Response(null, { status: 200 });
    const sum = new Uint8Array(await crypto.subtle.digest("SHA-256", ctx.body));
    const got = Array.from(sum, (x) => x.toString(16).padStart(2, "0")).join("");
    if (got !== hex) {
      return json(400, { error: `digest mismatch, expected "${digest}", got "sha256:${got}"` });
    }
    this.#blobs.add(hex);
    return new Response(null, { status: 201 });
  }
}
