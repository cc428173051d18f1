// What every route handler shares: the request context it is given and the two response shapes
// Ollama's gin server writes (JSON with its charset, and plain text).

import type { Fault } from "./faults.ts";
import type { SimRequest } from "./core.ts";
import type { FrontConn } from "./front.ts";

export const JSON_TYPE = "application/json; charset=utf-8";

/** What one request carries through the handlers. */
export interface Ctx {
  req: Request;
  path: string;
  /** performance.now() when the request arrived. */
  started: number;
  /** Aborts when the client's connection closes or the simulator closes. */
  signal: AbortSignal;
  conn: FrontConn | undefined;
  /** A stall/drop this request took; the generation consumes it, else the response does. */
  fault: Fault | undefined;
  body: Uint8Array<ArrayBuffer>;
  /** The request's entry in OllamaSim.requests. */
  request: SimRequest;
}

/** The body as text, which is how Go's JSON decoder sees it. */
export const bodyText = (ctx: Ctx): string => new TextDecoder().decode(ctx.body);

export function json(status: number, body: unknown, headers: HeadersInit = {}): Response {
  const h = new Headers(headers);
  if (!h.has("content-type")) h.set("content-type", JSON_TYPE);
  return new Response(JSON.stringify(body), { status, headers: h });
}

export function text(status: number, body: string | null): Response {
  return new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}

/** The routes that generate: what faults default to, and what maxConcurrent() counts. */
export const INFERENCE_PATHS = [
  "/api/chat",
  "/api/generate",
  "/v1/chat/completions",
  "/v1/completions",
];
