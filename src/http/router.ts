// The HTTP handler: a plain (Request) => Promise<Response> built from foreman's parts, so tests can
// call it without a socket. It authenticates, routes, and maps every error to Ollama's
// {"error": "..."} shape in one place.

import { errorMessage } from "../log.ts";
import { DISK_FULL_MESSAGE, isDiskFull } from "../queue/disk_full.ts";
import type { BearerAuth } from "./auth.ts";
import { errorJson, HttpError, jsonResponse } from "./errors.ts";
import * as jobs from "./jobs.ts";
import * as native from "./native.ts";

export interface RouterDeps extends jobs.JobsDeps {
  auth: BearerAuth;
}

const TEXT = { "content-type": "text/plain; charset=utf-8" };

export function createHandler(d: RouterDeps): (req: Request) => Promise<Response> {
  return async (req: Request): Promise<Response> => {
    let res: Response;
    try {
      res = await route(req, d);
    } catch (err) {
      if (err instanceof HttpError) {
        res = errorJson(err.status, err.message, err.headers);
      } else if (isDiskFull(err)) {
        d.log.error("request refused: the disk is full", { method: req.method });
        res = errorJson(503, DISK_FULL_MESSAGE, { "retry-after": "30" });
      } else {
        d.log.error("request failed", { method: req.method, error: errorMessage(err) });
        res = errorJson(500, `internal error: ${errorMessage(err)}`);
      }
    }
    d.metrics.httpRequests.inc({ code: `${Math.floor(res.status / 100)}xx` });
    return res;
  };
}

/** 405 naming the methods a route takes; HEAD is answered wherever GET is, as Ollama's are. */
function methodNotAllowed(allowed: string): never {
  if (/\bGET\b/.test(allowed) && !/\bHEAD\b/.test(allowed)) {
    allowed = allowed.replace(/\bGET\b/, "GET, HEAD");
  }
  throw new HttpError(405, `method not allowed: use ${allowed}`, { allow: allowed });
}

function noRoute(m: string, path: string): never {
  throw new HttpError(404, `no route for ${m} ${path.slice(0, 200)}`);
}

/** /api/blobs/{digest}: one non-empty segment, nothing below it. */
const BLOB = /^\/api\/blobs\/[^/]+$/;

async function route(req: Request, d: RouterDeps): Promise<Response> {
  const url = new URL(req.url);
  const path = url.pathname;
  const m = req.method;

  // Unauthenticated: liveness and the Ollama greeting that clients probe.
  if (path === "/") {
    if (m !== "GET" && m !== "HEAD") methodNotAllowed("GET, HEAD");
    return new Response(m === "HEAD" ? null : "Ollama is running", { headers: TEXT });
  }
  if (path === "/healthz") {
    if (m !== "GET" && m !== "HEAD") methodNotAllowed("GET");
    const detail = d.config.healthDetail || d.auth.check(req.headers.get("authorization"));
    return jsonResponse(health(d, { detail }));
  }

  if (!d.auth.check(req.headers.get("authorization"))) {
    const message = req.headers.has("authorization")
      ? "invalid bearer token"
      : "missing bearer token: send Authorization: Bearer <token>";
    // Ollama's Go client from v0.12 shows a 401's "status" in place of its "error" (older clients
    // and the other SDKs read "error").
    return jsonResponse({ error: message, status: `401 Unauthorized: ${message}` }, 401, {
      "www-authenticate": 'Bearer realm="foreman"',
    });
  }

  if (path.startsWith("/jobs")) return await jobsRoute(req, url, d);
  if (path === "/metrics") {
    if (m !== "GET" && m !== "HEAD") methodNotAllowed("GET");
    return new Response(d.metrics.render(), {
      headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
    });
  }
  if (path === "/v1" || path.startsWith("/v1/")) {
    throw new HttpError(
      404,
      "foreman serves Ollama's native API (/api/*); the OpenAI-compatible /v1 API is not supported " +
        "yet (ADR-0003)",
    );
  }
  if (path.startsWith("/api/blobs/") && !BLOB.test(path)) noRoute(m, path);

  switch (path) {
    case "/api/chat":
    case "/api/generate":
      if (m !== "POST") methodNotAllowed("POST");
      return await native.queued(req, path === "/api/chat" ? "chat" : "generate", d);
    case "/api/embed":
    case "/api/embeddings":
      if (m !== "POST") methodNotAllowed("POST");
      return await native.embed(req, path, d);
    case "/api/tags":
      if (m !== "GET" && m !== "HEAD") methodNotAllowed("GET");
      return await native.tags(d);
    case "/api/ps":
      if (m !== "GET" && m !== "HEAD") methodNotAllowed("GET");
      return await native.ps(req, d);
    case "/api/version":
      if (m !== "GET" && m !== "HEAD") methodNotAllowed("GET");
      return await native.version(req, d);
    case "/api/show":
      if (m !== "POST") methodNotAllowed("POST");
      return await native.show(req, d);
  }
  if (native.MANAGEMENT_ROUTES.includes(path) || path.startsWith("/api/blobs/")) {
    return await native.management(req, path, d);
  }
  noRoute(m, path);
}

/**
 * /jobs, /jobs/{id} and /jobs/{id}/artifacts/{name}, matched segment by segment. Anything else that
 * starts with /jobs (/jobsXYZ, /jobs.json, /jobs/, /jobs/{id}/x) is 404, never a near match.
 */
async function jobsRoute(req: Request, url: URL, d: RouterDeps): Promise<Response> {
  const [, root, id, sub, name, ...rest] = url.pathname.split("/"); // "", "jobs", id, sub, name
  const m = req.method;
  if (root !== "jobs" || id === "") noRoute(m, url.pathname);
  if (id === undefined) {
    if (m === "POST") return await jobs.submit(req, d);
    if (m === "GET" || m === "HEAD") return jobs.list(url, d);
    methodNotAllowed("GET, POST");
  }
  if (sub === undefined) {
    if (m === "GET" || m === "HEAD") return jobs.get(id, d);
    if (m === "DELETE") return await jobs.cancel(id, d);
    methodNotAllowed("GET, DELETE");
  }
  if (sub === "artifacts" && name && rest.length === 0) {
    if (m !== "GET" && m !== "HEAD") methodNotAllowed("GET");
    return jobs.artifact(id, name, req, d);
  }
  noRoute(m, url.pathname);
}

/**
 * GET /healthz. `status` and `degraded` are for anyone (load balancers, container healthchecks);
 * the rest names the target's version, the models and the queue depth, so it needs the token
 * unless server.health_detail opens it.
 */
export function health(d: RouterDeps, options: { detail: boolean }): Record<string, unknown> {
  if (!options.detail) return { status: "ok", degraded: d.inventory.degraded };
  // Not countByState: that counts every retained job, and health checks come often.
  const queued = d.store.countQueued();
  const running = d.store.active().length;
  const snap = d.inventory.snapshot;
  return {
    status: "ok",
    degraded: d.inventory.degraded,
    target: {
      reachable: d.inventory.reachable,
      last_poll: snap.lastPoll === null ? null : new Date(snap.lastPoll).toISOString(),
      version: snap.version,
    },
    queue: { queued, running },
    resident: d.inventory.resident(),
    worker_model: d.residency.current ?? null,
  };
}
