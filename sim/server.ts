// A stand-in for one Ollama v0.11.4 server: its routes, wire format, errors and scheduler (loading,
// eviction, keep_alive, one request at a time per model), plus fault injection for crash suites.
// Tests import OllamaSim from sim/mod.ts; benchmarks run it as a process (sim/main.ts).

import { type Config, type SimOptions, toConfig } from "./config.ts";
import { Core, type SimEvent, type SimRequest } from "./core.ts";
import { DROPPED, inflict } from "./faults.ts";
import { Front } from "./front.ts";
import { allowedHost, allowedOrigin } from "./guard.ts";
import { type Ctx, json } from "./http.ts";
import { failure, route } from "./routes.ts";

/**
 * A running simulated Ollama. Start with {@link OllamaSim.start}; always {@link OllamaSim.close}.
 * `events`, `requests` and the scheduler state survive stop() and restart().
 */
export type { SimRequest };

export class OllamaSim {
  readonly url: string;
  readonly port: number;
  readonly requests: SimRequest[] = [];

  #cfg: Config;
  #core: Core;
  #server: Deno.HttpServer<Deno.NetAddr>;
  #front: Front;
  #closing = new AbortController();
  #listening = true;
  #closed = false;

  private constructor(
    cfg: Config,
    server: Deno.HttpServer<Deno.NetAddr>,
    front: Front,
    port: number,
  ) {
    this.#cfg = cfg;
    this.#core = new Core(cfg);
    this.#server = server;
    this.#front = front;
    this.port = port;
    const shown = ["0.0.0.0", "::", ""].includes(cfg.hostname) ? "127.0.0.1" : cfg.hostname;
    this.url = `http://${shown.includes(":") ? `[${shown}]` : shown}:${port}`;
  }

  /** Starts listening; resolves once the port accepts connections. */
  static async start(opts: SimOptions = {}): Promise<OllamaSim> {
    const cfg = toConfig(opts);
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

  /** What happened to models, in order: requests naming them, loads, unloads, and the start and end
   * of each generation or embedding. */
  get events(): SimEvent[] {
    return this.#core.events;
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
    return [...this.#core.sched.loaded.keys()];
  }

  /** Most generations (native or /v1) seen running at once, for one model or over all. */
  maxConcurrent(model?: string): number {
    return this.#core.maxConcurrent(model);
  }

  /** The next n generation requests (chat, generate, and /v1 chat and completions), or requests to
   * `opts.path`, get `status` and the error in their surface's shape ({"error": …} natively). */
  failNext(n: number, status: number, error: string, opts: { path?: string } = {}): void {
    this.#core.faults.add("fail", n, { status, error, ...opts });
  }

  /** The next n generation responses (or responses on `opts.path`) stop after `afterChunks`
   * answer chunks (0: before the headers) and keep the connection open and the model busy until
   * the client leaves. A non-streamed or early answer is never sent; an answer with fewer chunks
   * than afterChunks completes normally. */
  stallNext(n: number, opts: { afterChunks?: number; path?: string } = {}): void {
    this.#core.faults.add("stall", n, opts);
  }

  /** Like stallNext, but the connection is closed instead (before any byte when afterChunks is 0;
   * else after that many chunks, with the chunked body left unterminated). */
  dropNext(n: number, opts: { afterChunks?: number; path?: string } = {}): void {
    this.#core.faults.add("drop", n, opts);
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
    if (!opts.keepResidency) this.#core.sched.forget();
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
    this.#core.sched.close();
    await this.#server.shutdown();
  }

  // -------------------------------------------------------------------------------------------

  async #handle(req: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Promise<Response> {
    const path = new URL(req.url).pathname;
    const conn = this.#front.conn(info.remoteAddr.port);
    let body = new Uint8Array(0);
    if (req.body) {
      try {
        body = new Uint8Array(await req.arrayBuffer());
      } catch {
        return json(400, { error: "unexpected EOF" });
      }
    }
    const request: SimRequest = {
      method: req.method,
      path,
      headers: req.headers,
      body: loggedBody(path, body),
    };
    this.requests.push(request);
    const refused = this.#guard(req);
    if (refused) return refused;
    const fail = this.#core.faults.take("fail", path);
    if (fail) return failure(path, fail.status, fail.error);
    const ctx: Ctx = {
      req,
      path,
      started: performance.now(),
      // Only the front knows when the client went away; req.signal is a fallback for direct calls.
      signal: AbortSignal.any([conn?.closed.signal ?? req.signal, this.#closing.signal]),
      conn,
      fault: this.#core.faults.take("stall", path) ?? this.#core.faults.take("drop", path),
      body,
      request,
    };
    const res = await route(this.#core, ctx);
    const origin = req.headers.get("origin");
    if (origin) { for (const [k, v] of Object.entries(cors(origin))) res.headers.set(k, v); }
    if (!ctx.fault) return res;
    await res.body?.cancel();
    return await inflict(ctx.fault, ctx);
  }

  /** Ollama's Host and Origin checks (403, empty), and CORS preflights (204). */
  #guard(req: Request): Response | undefined {
    const host = req.headers.get("host");
    const origin = req.headers.get("origin");
    if (!allowedOrigin(origin, host)) return new Response(null, { status: 403 });
    const loopback = /^(127\.|localhost$|::1$)/.test(this.#cfg.hostname);
    if (loopback && !allowedHost(host)) return new Response(null, { status: 403 });
    if (req.method !== "OPTIONS") return undefined;
    return new Response(null, { status: 204, headers: origin ? cors(origin) : {} });
  }
}

function cors(origin: string): Record<string, string> {
  return { "access-control-allow-origin": origin, vary: "Origin" };
}

function loggedBody(path: string, body: Uint8Array): unknown {
  if (body.length === 0) return undefined;
  if (path.startsWith("/api/blobs/")) return body;
  const t = new TextDecoder().decode(body);
  try {
    return JSON.parse(t);
  } catch {
    return t;
  }
}
