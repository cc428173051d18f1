// The one HTTP client foreman uses to talk to its target. It adds the outbound token, never the
// caller's Host or Origin, and turns failures into two kinds the worker treats differently: the
// target could not be reached or stalled (retry, never fail a job) or it answered with an error
// status. Every wait on the target has a deadline, and nothing it answers is buffered without a cap.

const decoder = new TextDecoder();

export class TargetUnreachableError extends Error {
  override name = "TargetUnreachableError";
  /** The target was reached but went silent (no headers, or no byte of a body, in time). */
  readonly silent: boolean;
  constructor(message: string, options: { cause?: unknown; silent?: boolean } = {}) {
    super(message, { cause: options.cause });
    this.silent = options.silent ?? false;
  }
}

/** The target answered with a non-2xx status; `message` is its {"error"} text when it sent one. */
export class TargetHttpError extends Error {
  override name = "TargetHttpError";
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** An answer from the target (a line, or a whole body foreman keeps) is larger than allowed. */
export class AnswerTooLargeError extends Error {
  override name = "AnswerTooLargeError";
  constructor(readonly limit: number, what = "answer") {
    super(
      `the target's ${what} is larger than ${limit} bytes, the limit set by target.max_answer ` +
        `(FOREMAN_MAX_ANSWER)`,
    );
  }
}

export interface TargetClientOptions {
  baseUrl: string;
  token?: string;
  /** Longest wait for response headers, and for each read of a body, before the target counts
   * as stalled. */
  timeout: number;
  /** Largest body foreman reads whole (inventory, residency calls, error bodies). */
  maxAnswer?: number;
}

/**
 * A deadline over a series of reads that costs one timer per `timeout`, not one per read: `touch()`
 * only records the time, and the timer re-arms itself for what is left when it fires early.
 */
export class IdleTimer {
  #last = performance.now();
  #timer: ReturnType<typeof setTimeout>;
  readonly #timeout: number;
  readonly #onIdle: () => void;

  constructor(timeout: number, onIdle: () => void) {
    this.#timeout = timeout;
    this.#onIdle = onIdle;
    this.#timer = setTimeout(this.#check, timeout);
  }

  touch(): void {
    this.#last = performance.now();
  }

  stop(): void {
    clearTimeout(this.#timer);
  }

  #check = () => {
    const left = this.#timeout - (performance.now() - this.#last);
    if (left > 0) this.#timer = setTimeout(this.#check, left);
    else this.#onIdle();
  };
}

/** Request headers the target gets from foreman; anything of the caller's stays behind. */
export function targetHeaders(
  token: string | undefined,
  contentType?: string | null,
): [string, string][] {
  const h: [string, string][] = [];
  if (contentType) h.push(["content-type", contentType]);
  h.push(["accept", "application/json, application/x-ndjson"], ["user-agent", "foreman"]);
  if (token) h.push(["authorization", `Bearer ${token}`]);
  return h;
}

export class TargetClient {
  readonly baseUrl: string;
  readonly #token?: string;
  readonly timeout: number;
  readonly maxAnswer: number;
  /** The headers of each content type sent, made once: fetch copies them into each request. */
  readonly #headers = new Map<string | null | undefined, [string, string][]>();

  constructor(options: TargetClientOptions) {
    this.baseUrl = options.baseUrl;
    this.#token = options.token || undefined;
    this.timeout = options.timeout;
    this.maxAnswer = options.maxAnswer ?? 64 * 1024 ** 2;
  }

  /**
   * Sends one request. Resolves with the response whatever its status, except a redirect; rejects
   * with TargetUnreachableError when no response arrived (refused, reset, DNS, headers timed out)
   * and with TargetHttpError 502 when the target answered with a redirect, which foreman neither
   * follows nor relays (a client that follows it could take its token to another host).
   */
  async fetch(
    path: string,
    init: {
      method?: string;
      body?: BodyInit | null;
      contentType?: string | null;
      signal?: AbortSignal;
    } = {},
  ): Promise<Response> {
    // The timeout covers the wait for response headers only: a body may stream for a long time,
    // and its silences are watched by whoever reads it (readText, the relay).
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), this.timeout);
    const signal = init.signal ? AbortSignal.any([init.signal, timeout.signal]) : timeout.signal;
    let res: Response;
    try {
      res = await fetch(this.baseUrl + path, {
        method: init.method ?? "GET",
        headers: this.#headersFor(init.contentType),
        body: init.body,
        signal,
        redirect: "manual",
      });
    } catch (err) {
      if (init.signal?.aborted) throw init.signal.reason ?? err;
      const why = timeout.signal.aborted ? "no answer in time" : (err as Error).message;
      throw new TargetUnreachableError(`Cannot reach the target at ${this.baseUrl}: ${why}`, {
        cause: err,
        silent: timeout.signal.aborted,
      });
    } finally {
      clearTimeout(timer);
    }
    if (res.status >= 300 && res.status < 400) {
      res.body?.cancel().catch(() => {});
      const route = `${init.method ?? "GET"} ${path.split("?")[0]}`;
      throw new TargetHttpError(
        502,
        `the target answered ${route} with a redirect (HTTP ${res.status}); foreman does not ` +
          `follow or relay redirects`,
      );
    }
    return res;
  }

  #headersFor(contentType: string | null | undefined): [string, string][] {
    let h = this.#headers.get(contentType);
    if (!h) {
      h = targetHeaders(this.#token, contentType);
      // Caller-supplied types (passthrough routes) are not kept: their variety is the caller's.
      if (contentType === undefined || contentType === "application/json") {
        this.#headers.set(contentType, h);
      }
    }
    return h;
  }

  /**
   * GETs a JSON route, or POSTs `body` to it as JSON, and parses its answer; non-2xx becomes
   * TargetHttpError.
   */
  async json<T>(path: string, options: { body?: unknown; signal?: AbortSignal } = {}): Promise<T> {
    const { body, signal } = options;
    const res = await this.fetch(path, {
      method: body === undefined ? "GET" : "POST",
      body: body === undefined ? undefined : JSON.stringify(body),
      contentType: body === undefined ? undefined : "application/json",
      signal,
    });
    const text = await this.readText(res, { path, signal });
    if (!res.ok) throw new TargetHttpError(res.status, errorFromBody(text, res.status));
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new TargetHttpError(502, `The target sent invalid JSON on ${path}`);
    }
  }

  /**
   * Reads a whole body of the answer to `path` as text, each read within the timeout and the whole
   * within maxAnswer (readBytes).
   */
  async readText(
    res: Response,
    options: { path: string; signal?: AbortSignal },
  ): Promise<string> {
    return decoder.decode(await this.readBytes(res, options));
  }

  /**
   * Reads a whole body of the answer to `path`, each read within the timeout and the whole within
   * maxAnswer (AnswerTooLargeError, before more is held). A stall or a cut is
   * TargetUnreachableError (the target's fault, never the job's); an abort of `signal` (also the
   * fetch's) rejects with its reason.
   */
  async readBytes(
    res: Response,
    options: { path: string; signal?: AbortSignal },
  ): Promise<Uint8Array<ArrayBuffer>> {
    const { path, signal } = options;
    if (!res.body) return new Uint8Array();
    const declared = Number(res.headers.get("content-length") ?? NaN);
    if (declared > this.maxAnswer) {
      res.body.cancel().catch(() => {});
      throw new AnswerTooLargeError(this.maxAnswer);
    }
    const into = new Growable(Number.isInteger(declared) ? declared : WHOLE_START, this.maxAnswer);
    const reader = byobReader(res.body);
    let stalled: TargetUnreachableError | undefined;
    const idle = new IdleTimer(this.timeout, () => {
      stalled = new TargetUnreachableError(
        `the target stalled: it sent nothing for ${this.timeout} ms of its answer to ${path}`,
        { silent: true },
      );
      reader.cancel(stalled).catch(() => {});
    });
    try {
      while (true) {
        const done = await into.read(reader);
        if (stalled) throw stalled;
        if (done) break;
        idle.touch();
      }
    } catch (err) {
      reader.cancel(err).catch(() => {});
      if (signal?.aborted) throw signal.reason ?? err;
      if (err instanceof TargetUnreachableError || err instanceof AnswerTooLargeError) throw err;
      throw new TargetUnreachableError(
        `The target closed the connection: ${(err as Error).message}`,
        { cause: err },
      );
    } finally {
      idle.stop();
    }
    return into.bytes();
  }
}

/** Where a whole answer of unknown size starts; it doubles as it fills. */
const WHOLE_START = 16 * 1024;

type BodyReader = ReadableStreamBYOBReader | ReadableStreamDefaultReader<Uint8Array>;

/**
 * A reader that fills buffers foreman gives it, where the body allows it (fetch bodies do): a
 * default reader of a fetch body allocates a 64 KiB buffer per read, which V8 counts as external
 * memory and answers with a full garbage collection every few hundred reads.
 */
export function byobReader(body: ReadableStream<Uint8Array>): BodyReader {
  try {
    return body.getReader({ mode: "byob" });
  } catch {
    return body.getReader(); // not a byte stream
  }
}

/**
 * A buffer a body is read into, read by read, that grows by doubling up to `limit` bytes; past
 * it, AnswerTooLargeError, before more is held.
 */
class Growable {
  #buf: Uint8Array<ArrayBuffer>;
  #size = 0;
  readonly #limit: number;

  constructor(initial: number, limit: number) {
    // One byte more than the limit, so a body past it is seen without reading it all.
    this.#buf = new Uint8Array(Math.max(1, Math.min(initial, limit) + 1));
    this.#limit = limit;
  }

  /** Reads once into the free part; resolves with true at the end of the body. */
  async read(reader: BodyReader): Promise<boolean> {
    if (this.#size === this.#buf.byteLength) this.#grow(this.#size * 2);
    if (!(reader instanceof ReadableStreamBYOBReader)) {
      const { value, done } = await reader.read();
      if (done) return true;
      this.#append(value);
      return false;
    }
    const free = new Uint8Array(this.#buf.buffer, this.#size, this.#buf.byteLength - this.#size);
    const { value, done } = await reader.read(free);
    // The read moved the buffer: what it filled is the same memory, under a new name.
    if (value) this.#buf = new Uint8Array(value.buffer as ArrayBuffer);
    if (done) return true;
    this.#size += value.byteLength;
    if (this.#size > this.#limit) throw new AnswerTooLargeError(this.#limit);
    return false;
  }

  #append(chunk: Uint8Array): void {
    if (this.#size + chunk.byteLength > this.#buf.byteLength) {
      this.#grow(Math.max(this.#buf.byteLength * 2, this.#size + chunk.byteLength));
    }
    this.#buf.set(chunk.subarray(0, this.#buf.byteLength - this.#size), this.#size);
    this.#size += chunk.byteLength;
    if (this.#size > this.#limit) throw new AnswerTooLargeError(this.#limit);
  }

  #grow(want: number): void {
    const next = new Uint8Array(Math.min(want, this.#limit + 1));
    next.set(this.#buf.subarray(0, this.#size));
    this.#buf = next;
  }

  /** What was read, without a copy. */
  bytes(): Uint8Array<ArrayBuffer> {
    return this.#buf.subarray(0, this.#size);
  }
}

/**
 * The message of Ollama's error shape, {"error": "..."}, when `text` is one: an error body, or the
 * last line of a stream that failed after its first byte. foreman answers in the same shape.
 */
export function ollamaError(text: string): string | undefined {
  if (!text.includes('"error"')) return undefined;
  try {
    const v = JSON.parse(text);
    return typeof v?.error === "string" ? v.error : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The message of OpenAI's error shape, {"error": {"message": "..."}}, which Ollama's /v1 routes
 * answer: an error body, or the data of a Server-Sent Event.
 */
export function openaiError(text: string): string | undefined {
  if (!text.includes('"error"')) return undefined;
  try {
    const v = JSON.parse(text);
    return typeof v?.error?.message === "string" ? v.error.message : undefined;
  } catch {
    return undefined;
  }
}

/** OpenAI's error shape, which foreman's /v1 answers and its mid-stream /v1 failures use. */
export function openaiErrorBody(
  message: string,
  type = "api_error",
): { error: { message: string; type: string; param: null; code: null } } {
  return { error: { message, type, param: null, code: null } };
}

/** The message of an error body in Ollama's or OpenAI's shape, or a description of the status. */
export function errorFromBody(text: string, status: number): string {
  return ollamaError(text) ?? openaiError(text) ??
    (text.trim() ? text.trim().slice(0, 500) : `target answered HTTP ${status}`);
}
