// Errors the HTTP layer answers with, in the shape of the surface a route belongs to: Ollama's
// {"error": "..."} on the native routes and /jobs, OpenAI's {"error": {"message", "type", "param",
// "code"}} on /v1. Handlers throw HttpError; the router shapes it (and anything unexpected) in one
// place.

import { openaiErrorBody } from "../ollama/client.ts";

export class HttpError extends Error {
  override name = "HttpError";
  constructor(readonly status: number, message: string, readonly headers: HeadersInit = {}) {
    super(message);
  }
}

/** The dialect of a route: its errors take that dialect's shape. */
export type Surface = "ollama" | "openai";

export function jsonResponse(body: unknown, status = 200, headers: HeadersInit = {}): Response {
  const h = new Headers(headers);
  h.set("content-type", "application/json; charset=utf-8");
  return new Response(JSON.stringify(body), { status, headers: h });
}

function errorJson(status: number, message: string, headers: HeadersInit = {}): Response {
  return jsonResponse({ error: message }, status, headers);
}

/**
 * The `type` an OpenAI client expects for a status: the SDKs pick their error class by status
 * and show the message, and some callers branch on the type.
 */
export function openaiErrorType(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 429) return "rate_limit_error";
  return status >= 500 ? "api_error" : "invalid_request_error";
}

/** An error response in the shape of `surface`. */
export function errorResponse(
  surface: Surface,
  err: { status: number; message: string; headers?: HeadersInit },
): Response {
  const { status, message, headers = {} } = err;
  if (surface === "ollama") return errorJson(status, message, headers);
  return jsonResponse(openaiErrorBody(message, openaiErrorType(status)), status, headers);
}
