// The one HTTP client foreman uses to talk to its target. It adds the outbound token, never the
// caller's Host or Origin, and turns failures into two kinds the worker treats differently: the
// target could not be reached or stalled (retry, never fail a job) or it answered with an error
// status. Every wait on the target has a deadline, and nothing it answers is buffered without a cap.

import { concat } from "../bytes.ts";

const decoder = new TextDecoder();

export class TargetUnreachableError extends Error {
  override name = "TargetUnreachableError";
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
export function targetHeaders(token: string | undefined, contentType?: string | null): Headers {
  const h = new Headers();
  if (contentType) h.set("content-type", contentType);
  h.set("accept", "application/json, application/x-ndjson");
  h.set("user-agent", "foreman");
  if (token) h.set("authorization", `Bearer ${token}`);
  return h;
}

export class TargetClient {
  readonly baseUrl: string;
  readonly #token?: string;
  readonly timeout: number;
  readonly maxAnswer: number;

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
        headers: targetHeaders(this.#token, init.contentType),
        body: init.body,
        signal,
        redirect: "manual",
      });
    } catch (err) {
      if (init.signal?.aborted) throw init.signal.reason ?? err;
      const why = timeout.signal.aborted ? "no answer in time" : (err as Error).message;
      throw new TargetUnreachableError(`Cannot reach the target at ${this.baseUrl}: ${why}`, {
        cause: err,
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
    const reader = res.body.getReader();
    let stalled: TargetUnreachableError | undefined;
    const idle = new IdleTimer(this.timeout, () => {
      stalled = new TargetUnreachableError(
        `the target stalled: it sent nothing for ${this.timeout} ms of its answer to ${path}`,
      );
      reader.cancel(stalled).catch(() => {});
    });
    const parts: Uint8Array[] = [];
    let size = 0;
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (stalled) throw stalled;
        if (done) break;
        idle.touch();
        size += value.byteLength;
        if (size > this.maxAnswer) throw new AnswerTooLargeError(this.maxAnswer);
        parts.push(value);
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
    return concat(parts);
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
