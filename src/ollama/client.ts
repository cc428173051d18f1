// The one HTTP client foreman uses to talk to its target. It adds the outbound token, never the
// caller's Host or Origin, and turns failures into two kinds the worker treats differently: the
// target could not be reached (retry, never fail a job) or it answered with an error status.

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

export interface TargetClientOptions {
  baseUrl: string;
  token?: string;
  /** Longest wait for response headers before the target counts as stalled. */
  timeout: number;
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
  readonly #timeout: number;

  constructor(options: TargetClientOptions) {
    this.baseUrl = options.baseUrl;
    this.#token = options.token || undefined;
    this.#timeout = options.timeout;
  }

  /**
   * Sends one request. Resolves with the response whatever its status; rejects with
   * TargetUnreachableError when no response arrived (refused, reset, DNS, headers timed out).
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
    // and its silences are watched by the relay instead.
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), this.#timeout);
    const signal = init.signal ? AbortSignal.any([init.signal, timeout.signal]) : timeout.signal;
    try {
      return await fetch(this.baseUrl + path, {
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
  }

  /** GET/POST a JSON route and parse its answer; non-2xx becomes TargetHttpError. */
  async json<T>(path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const res = await this.fetch(path, {
      method: body === undefined ? "GET" : "POST",
      body: body === undefined ? undefined : JSON.stringify(body),
      contentType: body === undefined ? undefined : "application/json",
      signal,
    });
    const text = await readText(res);
    if (!res.ok) throw new TargetHttpError(res.status, errorFromBody(text, res.status));
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new TargetHttpError(502, `The target sent invalid JSON on ${path}`);
    }
  }
}

async function readText(res: Response): Promise<string> {
  try {
    return await res.text();
  } catch (err) {
    throw new TargetUnreachableError(
      `The target closed the connection: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

/** The `error` field of an Ollama error body, or a description of the status when absent. */
export function errorFromBody(text: string, status: number): string {
  try {
    const parsed = JSON.parse(text);
    if (parsed && typeof parsed.error === "string") return parsed.error;
  } catch {
    // not JSON: fall through
  }
  return text.trim() ? text.trim().slice(0, 500) : `target answered HTTP ${status}`;
}
