// A small Ollama-like target that misbehaves on demand, for what the simulator does not do: answer
// with a redirect, send headers and then stall mid-body, flood a caller that stops reading, send a
// line of hundreds of megabytes. By default it answers like a tiny Ollama with one model, "tiny";
// a test replaces the answer of any path with `on(path, handler)`.

export interface SeenRequest {
  method: string;
  path: string;
  headers: Headers;
  body: string;
}

export type Handler = (req: SeenRequest) => Response | Promise<Response>;

/** One body the target streamed: how much it sent and whether the reader went away. */
export interface StreamStats {
  bytes: number;
  cancelled: boolean;
}

const enc = new TextEncoder();
const JSON_TYPE = { "content-type": "application/json; charset=utf-8" };
const NDJSON_TYPE = { "content-type": "application/x-ndjson" };

export class HostileTarget {
  /** Every request, in arrival order. */
  readonly seen: SeenRequest[] = [];
  /** Every body made by the helpers below, in creation order. */
  readonly streams: StreamStats[] = [];
  readonly #handlers = new Map<string, Handler>();
  readonly #open = new Set<ReadableStreamDefaultController<Uint8Array>>();
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  /** Models the default chat/generate handler has "loaded". */
  readonly resident = new Set<string>();

  private constructor(hostname: string) {
    this.#server = Deno.serve(
      { hostname, port: 0, onListen: () => {}, onError: () => new Response(null, { status: 500 }) },
      async (req) => {
        const seen: SeenRequest = {
          method: req.method,
          path: new URL(req.url).pathname,
          headers: req.headers,
          body: await req.text(),
        };
        this.seen.push(seen);
        const handler = this.#handlers.get(seen.path) ?? ((r: SeenRequest) => this.answer(r));
        return await handler(seen);
      },
    );
  }

  static start(options: { hostname?: string } = {}): HostileTarget {
    return new HostileTarget(options.hostname ?? "127.0.0.1");
  }

  get url(): string {
    const { hostname, port } = this.#server.addr;
    return `http://${hostname}:${port}`;
  }

  /** Answers `path` with `handler` from now on; undefined restores the default answer. */
  on(path: string, handler: Handler | undefined): void {
    if (handler) this.#handlers.set(path, handler);
    else this.#handlers.delete(path);
  }

  /** Requests seen for `path`. */
  requests(path: string): SeenRequest[] {
    return this.seen.filter((r) => r.path === path);
  }

  /** A redirect to `location`, as a misconfigured or hostile target might send. */
  redirect(location: string, status = 307): Response {
    return new Response("moved", { status, headers: { location } });
  }

  /** Headers and `head` of the body, then silence until the reader goes away. */
  stall(head: string, headers: HeadersInit = JSON_TYPE, status = 200): Response {
    return this.#stream(headers, status, (emit) => {
      emit(enc.encode(head));
      return "wait";
    });
  }

  /** NDJSON lines as fast as the reader takes them, up to `limit` bytes. */
  flood(model: string, limit = 1024 ** 3): Response {
    const line = JSON.stringify({
      model,
      created_at: new Date().toISOString(),
      message: { role: "assistant", content: "x".repeat(200) },
      done: false,
    }) + "\n";
    const chunk = enc.encode(line.repeat(Math.ceil(65_536 / line.length)));
    let sent = 0;
    return this.#stream(NDJSON_TYPE, 200, (emit) => {
      if (sent >= limit) return "close";
      emit(chunk);
      sent += chunk.byteLength;
      return "more";
    });
  }

  /** One JSON object whose `response` string makes it `bytes` long, with no newline at all. */
  hugeLine(bytes: number, contentType: HeadersInit = NDJSON_TYPE): Response {
    const chunk = enc.encode("a".repeat(65_536));
    const head = enc.encode('{"model":"tiny","response":"');
    let sent = 0;
    return this.#stream(contentType, 200, (emit) => {
      if (sent === 0) {
        emit(head);
        sent += head.byteLength;
      } else if (sent < bytes) {
        emit(chunk);
        sent += chunk.byteLength;
      } else {
        emit(enc.encode('","done":true}'));
        return "close";
      }
      return "more";
    });
  }

  #stream(
    headers: HeadersInit,
    status: number,
    next: (emit: (chunk: Uint8Array) => void) => "more" | "close" | "wait",
  ): Response {
    const stats: StreamStats = { bytes: 0, cancelled: false };
    this.streams.push(stats);
    const open = this.#open;
    let controller: ReadableStreamDefaultController<Uint8Array>;
    let waiting = false;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        controller = c;
        open.add(c);
      },
      pull(c) {
        if (waiting) return;
        const what = next((chunk) => {
          stats.bytes += chunk.byteLength;
          c.enqueue(chunk);
        });
        if (what === "close") {
          open.delete(controller);
          c.close();
        } else if (what === "wait") {
          waiting = true;
        }
      },
      cancel() {
        stats.cancelled = true;
        open.delete(controller);
      },
    }, { highWaterMark: 0 });
    return new Response(body, { status, headers });
  }

  /** The default answer to `req`: a tiny Ollama with one model, "tiny". */
  answer(req: SeenRequest): Response {
    const json = (body: unknown, status = 200) =>
      new Response(JSON.stringify(body), { status, headers: JSON_TYPE });
    switch (req.path) {
      case "/api/tags":
        return json({ models: [{ name: "tiny:latest", model: "tiny:latest", size: 1 }] });
      case "/api/ps":
        return json({ models: [...this.resident].map((name) => ({ name, model: name })) });
      case "/api/version":
        return json({ version: "0.11.4" });
      case "/api/show":
        return json({ details: { family: "llama" }, capabilities: ["completion"] });
      case "/api/embed":
        return json({ model: "tiny", embeddings: [[0.6, 0.8]] });
      case "/api/chat":
      case "/api/generate":
        return this.#generate(req);
    }
    return json({ error: `no route ${req.path}` }, 404);
  }

  /** A short answer ("one two"), or a load when there is nothing to generate. */
  #generate(req: SeenRequest): Response {
    const body = JSON.parse(req.body);
    const chat = req.path === "/api/chat";
    const empty = chat ? !body.messages?.length : !body.prompt;
    const name = String(body.model).includes(":") ? body.model : `${body.model}:latest`;
    this.resident.add(name);
    const piece = (text: string, done: boolean) => ({
      model: body.model,
      created_at: new Date().toISOString(),
      ...(chat ? { message: { role: "assistant", content: text } } : { response: text }),
      done,
      ...(done ? { done_reason: empty ? "load" : "stop", eval_count: 2 } : {}),
    });
    if (empty || body.stream === false) {
      return new Response(JSON.stringify(piece(empty ? "" : "one two", true)), {
        headers: JSON_TYPE,
      });
    }
    const lines = [piece("one", false), piece(" two", false), piece("", true)];
    return new Response(lines.map((l) => JSON.stringify(l) + "\n").join(""), {
      headers: NDJSON_TYPE,
    });
  }

  /** Ends every stream still open (a stall, a flood), then stops the server. */
  async close(): Promise<void> {
    for (const c of this.#open) {
      try {
        c.close();
      } catch {
        // already closed or errored
      }
    }
    this.#open.clear();
    await this.#server.shutdown();
  }
}
