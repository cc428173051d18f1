// Errors the HTTP layer answers with, always in Ollama's {"error": "..."} shape. Handlers throw
// HttpError; the router turns it (and anything unexpected) into a response in one place.

export class HttpError extends Error {
  override name = "HttpError";
  constructor(readonly status: number, message: string, readonly headers: HeadersInit = {}) {
    super(message);
  }
}

export function jsonResponse(body: unknown, status = 200, headers: HeadersInit = {}): Response {
  const h = new Headers(headers);
  h.set("content-type", "application/json; charset=utf-8");
  return new Response(JSON.stringify(body), { status, headers: h });
}

export function errorJson(status: number, message: string, headers: HeadersInit = {}): Response {
  return jsonResponse({ error: message }, status, headers);
}
