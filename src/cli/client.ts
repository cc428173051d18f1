// The HTTP client the CLI's client commands (submit, jobs, ps) use to talk to a running foreman.
// Its settings are client-only (FOREMAN_URL, FOREMAN_TOKEN), so it never loads the daemon's
// configuration, and every failure becomes a CliError whose message is the one line users see.

import { ollamaError } from "../ollama/client.ts";

/** A failure the CLI reports as one line and exit code 1. */
export class CliError extends Error {
  override name = "CliError";
  /** The HTTP status foreman answered with, when it answered. */
  readonly status?: number;

  constructor(message: string, options: { status?: number } = {}) {
    super(message);
    this.status = options.status;
  }
}

/** A usage mistake (bad flag, missing model): one line and exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

export const DEFAULT_URL = "http://127.0.0.1:8080";

/** How long one request may take before the CLI gives up on it. */
const REQUEST_TIMEOUT_MS = 30_000;

export interface ClientSettings {
  url: string;
  /** The bearer token to send; empty for none. */
  token: string;
}

/**
 * Reads FOREMAN_URL and FOREMAN_TOKEN (or FOREMAN_TOKEN_FILE). FOREMAN_TOKEN may hold the
 * daemon's comma-separated rotation list; the client sends the first entry, the newest by
 * convention.
 */
export function clientSettings(
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
  readFile: (path: string) => string = (path) => Deno.readTextFileSync(path),
): ClientSettings {
  const raw = (env("FOREMAN_URL") ?? "").trim() || DEFAULT_URL;
  const url = URL.parse(raw);
  if (!url) throw new UsageError(`FOREMAN_URL is not a URL: '${raw}'`);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`FOREMAN_URL must be http(s): '${raw}'`);
  }
  let token = env("FOREMAN_TOKEN");
  const file = env("FOREMAN_TOKEN_FILE");
  if (token === undefined && file) {
    try {
      token = readFile(file);
    } catch (err) {
      throw new CliError(`cannot read FOREMAN_TOKEN_FILE ${file}: ${(err as Error).message}`);
    }
  }
  const first = (token ?? "").split(",").map((t) => t.trim()).find((t) => t !== "") ?? "";
  return { url: url.origin + url.pathname.replace(/\/+$/, ""), token: first };
}

/** A small foreman HTTP client: JSON in, JSON out, errors as CliError. */
export class ForemanClient {
  readonly url: string;
  readonly #token: string;

  constructor(settings: ClientSettings) {
    this.url = settings.url;
    this.#token = settings.token;
  }

  /** Sends a request and returns the parsed JSON body of a 2xx answer. */
  async json<T>(
    method: string,
    path: string,
    options: { body?: unknown; headers?: Record<string, string>; auth?: boolean } = {},
  ): Promise<{ status: number; headers: Headers; body: T }> {
    const res = await this.fetch(method, path, options);
    const text = await res.text();
    try {
      return { status: res.status, headers: res.headers, body: JSON.parse(text) as T };
    } catch {
      throw new CliError(`${method} ${path}: foreman answered with something that is not JSON`);
    }
  }

  /**
   * Sends a request and returns the 2xx response; non-2xx answers become a CliError. With
   * `stream`, the time limit covers only the answer's headers: the body is open-ended and its
   * reader watches it.
   */
  async fetch(
    method: string,
    path: string,
    options: {
      body?: unknown;
      headers?: Record<string, string>;
      auth?: boolean;
      stream?: boolean;
    } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = { ...options.headers };
    if (options.auth !== false && this.#token) headers.authorization = `Bearer ${this.#token}`;
    let body: string | undefined;
    if (options.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    let res: Response;
    // A plain request's deadline covers its body; a stream's ends once its headers are in.
    const headersDue = options.stream ? new AbortController() : undefined;
    const timer = headersDue && setTimeout(
      () => headersDue.abort(new DOMException("request timed out", "TimeoutError")),
      REQUEST_TIMEOUT_MS,
    );
    try {
      res = await fetch(this.url + path, {
        method,
        headers,
        body,
        signal: headersDue?.signal ?? AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (err) {
      throw new CliError(unreachable(this.url, err));
    } finally {
      clearTimeout(timer);
    }
    if (res.ok) return res;
    const message = await errorText(res);
    if (res.status === 401) {
      throw new CliError(
        `foreman at ${this.url} refused the token (${message}): ` +
          (this.#token ? "check FOREMAN_TOKEN" : "set FOREMAN_TOKEN"),
        { status: 401 },
      );
    }
    throw new CliError(`${method} ${path}: ${res.status} ${message}`, { status: res.status });
  }
}

/** foreman's {"error"} message, else the first line of what it answered. */
async function errorText(res: Response): Promise<string> {
  const text = await res.text().catch(() => "");
  const [first = ""] = text.trim().split("\n", 1);
  return ollamaError(text) ?? (first.slice(0, 200) || res.statusText);
}

function unreachable(url: string, err: unknown): string {
  if (err instanceof Deno.errors.NotCapable) {
    return `not allowed to connect to ${url}: ${err.message}`;
  }
  if (err instanceof DOMException && err.name === "TimeoutError") {
    return `foreman at ${url} did not answer within ${REQUEST_TIMEOUT_MS / 1000}s`;
  }
  // Deno wraps the socket error in a TypeError; its cause carries the useful part.
  const cause = (err as { cause?: unknown }).cause;
  const why = cause instanceof Error ? cause.message : (err as Error).message;
  return `cannot reach foreman at ${url} (${firstLine(why)}); is it running? Set FOREMAN_URL ` +
    `to its address`;
}

function firstLine(text: string): string {
  const [first = ""] = text.split("\n", 1);
  return first
    .replace(/^error sending request for url \([^)]*\): /, "")
    .replace(/^client error \(Connect\): /, "")
    .replace(/^tcp connect error: /, "")
    .replace(/ \(os error \d+\)$/, "")
    .toLowerCase();
}
