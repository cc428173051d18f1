// The HTTP handler: a plain (Request) => Promise<Response> built from foreman's parts, so tests can
// call it without a socket. One table (ROUTES) names every route, its methods and whether it needs
// the token; every error a handler throws is shaped here, in one place, as its surface speaks:
// Ollama's {"error": "..."} on the native routes and /jobs, OpenAI's {"error": {…}} under /v1.

import { errorMessage } from "../log.ts";
import { DISK_FULL_MESSAGE, isDiskFull } from "../queue/disk_full.ts";
import type { HttpDeps } from "./deps.ts";
import { errorResponse, HttpError, jsonResponse, type Surface } from "./errors.ts";
import * as jobs from "./jobs.ts";
import * as native from "./native.ts";
import * as openai from "./openai.ts";

/** The names of a path's `:name` segments: "/jobs/:id/artifacts/:name" → "id" | "name". */
type ParamNames<P extends string> = P extends `${string}:${infer Name}/${infer Rest}`
  ? Name | ParamNames<Rest>
  : P extends `${string}:${infer Name}` ? Name
  : never;

/** What a handler gets besides the request: foreman's parts, the URL and the path's parameters. */
export interface RouteContext<P extends string = string> {
  d: HttpDeps;
  url: URL;
  /** Each `:name` segment of the route's path as it came (still percent-encoded). */
  params: { readonly [K in ParamNames<P>]: string };
}

export type Handler<P extends string = string> = (
  req: Request,
  c: RouteContext<P>,
) => Promise<Response> | Response;

/** Handlers by method. GET answers HEAD too, as Ollama's routes do; ANY takes every method. */
export type Methods<P extends string = string> = Partial<
  Record<"GET" | "POST" | "DELETE" | "ANY", Handler<P>>
>;

export interface Route {
  /** The path; a `:name` segment matches any one non-empty segment. */
  path: string;
  methods: Methods;
  /** Answered without a token: liveness and the greeting clients probe. */
  open?: boolean;
}

/** A route whose handlers see its path's parameters by name, typed from the path. */
function route<P extends string>(
  path: P,
  methods: Methods<P>,
  options: { open?: boolean } = {},
): Route {
  return { path, methods: methods as Methods, open: options.open };
}

const TEXT = { "content-type": "text/plain; charset=utf-8" };
const PROMETHEUS = { "content-type": "text/plain; version=0.0.4; charset=utf-8" };

/** Every route foreman serves. Anything else is 404, never a near match. */
export const ROUTES: readonly Route[] = [
  route("/", {
    GET: (req) =>
      new Response(req.method === "HEAD" ? null : "Ollama is running", { headers: TEXT }),
  }, { open: true }),
  route("/healthz", {
    GET: (req, { d }) => {
      const detail = d.settings.healthDetail || d.auth.check(req.headers.get("authorization"));
      return jsonResponse(health(d, { detail }));
    },
  }, { open: true }),
  route("/metrics", {
    GET: (_req, { d }) => new Response(d.metrics.render(), { headers: PROMETHEUS }),
  }),

  // Ollama's native API.
  route("/api/chat", { POST: (req, { d }) => native.queued(req, d, { endpoint: "chat" }) }),
  route("/api/generate", { POST: (req, { d }) => native.queued(req, d, { endpoint: "generate" }) }),
  route("/api/embed", { POST: (req, { d }) => native.embed(req, d, { path: "/api/embed" }) }),
  route("/api/embeddings", {
    POST: (req, { d }) => native.embed(req, d, { path: "/api/embeddings" }),
  }),
  route("/api/tags", { GET: (_req, { d }) => native.tags(d) }),
  route("/api/ps", { GET: (req, { d }) => native.ps(req, d) }),
  route("/api/version", { GET: (req, { d }) => native.version(req, d) }),
  route("/api/show", { POST: (req, { d }) => native.show(req, d) }),
  // Model management goes to the target with whatever method was used, when it is allowed at all.
  ...native.MANAGEMENT_ROUTES.map((path) =>
    route(path, { ANY: (req, { d }) => native.management(req, d, { path }) })
  ),
  route("/api/blobs/:digest", {
    ANY: (req, { d, url }) => native.management(req, d, { path: url.pathname }),
  }),

  // The OpenAI-compatible API (ADR-0016).
  route("/v1/chat/completions", { POST: (req, { d }) => openai.chatCompletions(req, d) }),
  route("/v1/completions", { POST: (req, { d }) => openai.completions(req, d) }),
  route("/v1/embeddings", { POST: (req, { d }) => openai.embeddings(req, d) }),
  route("/v1/models", { GET: (_req, { d }) => openai.models(d) }),
  route("/v1/models/:model", { GET: (_req, { d, params }) => openai.model(d, params.model) }),

  // The async surface.
  route("/jobs", {
    GET: (_req, { d, url }) => jobs.list(url, d),
    POST: (req, { d }) => jobs.submit(req, d),
  }),
  route("/jobs/:id", {
    GET: (req, { d, url, params }) => jobs.get(req, d, { id: params.id, url }),
    DELETE: (_req, { d, params }) => jobs.cancel(params.id, d),
  }),
  route("/jobs/:id/events", {
    GET: (req, { d, url, params }) => jobs.events(req, d, { id: params.id, url }),
  }),
  route("/jobs/:id/artifacts/:name", {
    GET: (req, { d, params }) => jobs.artifact(req, d, params),
  }),
];

export function createHandler(d: HttpDeps): (req: Request) => Promise<Response> {
  const match = matcher(ROUTES);
  return async (req: Request): Promise<Response> => {
    let res: Response;
    try {
      res = await dispatch(req, d, match);
    } catch (err) {
      const surface = surfaceOf(new URL(req.url).pathname);
      if (err instanceof HttpError) {
        res = errorResponse(surface, err);
      } else if (isDiskFull(err)) {
        d.log.error("request refused: the disk is full", { method: req.method });
        res = errorResponse(surface, {
          status: 503,
          message: DISK_FULL_MESSAGE,
          headers: { "retry-after": "30" },
        });
      } else {
        d.log.error("request failed", { method: req.method, error: errorMessage(err) });
        res = errorResponse(surface, {
          status: 500,
          message: `internal error: ${errorMessage(err)}`,
        });
      }
    }
    d.metrics.httpRequests.inc({ code: `${Math.floor(res.status / 100)}xx` });
    return res;
  };
}

async function dispatch(req: Request, d: HttpDeps, match: Matcher): Promise<Response> {
  const url = new URL(req.url);
  const m = req.method;
  const found = match(url.pathname);
  // Every route but the open ones needs the token, and so does learning that a path is no route.
  if (!found?.route.open && !d.auth.check(req.headers.get("authorization"))) {
    return unauthorized(req, surfaceOf(url.pathname));
  }
  if (!found) {
    const path = url.pathname.slice(0, 200);
    if (surfaceOf(url.pathname) === "openai") {
      throw new HttpError(404, `no route for ${m} ${path}: foreman serves ${openai.SERVED}`);
    }
    throw new HttpError(404, `no route for ${m} ${path}`);
  }
  const { methods } = found.route;
  const handler = methods[m as keyof Methods] ?? (m === "HEAD" ? methods.GET : undefined) ??
    methods.ANY;
  if (!handler) methodNotAllowed(methods);
  return await handler(req, { d, url, params: found.params });
}

/** The surface a path belongs to: everything under /v1, known route or not, speaks OpenAI. */
function surfaceOf(path: string): Surface {
  return path === "/v1" || path.startsWith("/v1/") ? "openai" : "ollama";
}

function unauthorized(req: Request, surface: Surface): Response {
  const message = req.headers.has("authorization")
    ? "invalid bearer token"
    : "missing bearer token: send Authorization: Bearer <token>";
  const headers = { "www-authenticate": 'Bearer realm="foreman"' };
  if (surface === "openai") return errorResponse(surface, { status: 401, message, headers });
  // Ollama's Go client from v0.12 shows a 401's "status" in place of its "error" (older clients
  // and the other SDKs read "error").
  return jsonResponse({ error: message, status: `401 Unauthorized: ${message}` }, 401, headers);
}

/** 405 naming the methods a route takes; HEAD is answered wherever GET is. */
function methodNotAllowed(methods: Methods): never {
  const allowed = Object.keys(methods).flatMap((m) => m === "GET" ? ["GET", "HEAD"] : [m]);
  throw new HttpError(405, `method not allowed: use ${allowed.join(", ")}`, {
    allow: allowed.join(", "),
  });
}

type Matcher = (
  path: string,
) => { route: Route; params: Record<string, string> } | undefined;

/**
 * Finds the route of a path: exact paths by look-up, the ones with `:name` segments segment by
 * segment, so /jobsXYZ, /jobs/ and /jobs/{id}/x match nothing.
 */
function matcher(routes: readonly Route[]): Matcher {
  const exact = new Map<string, Route>();
  const patterns: { route: Route; segments: string[] }[] = [];
  for (const r of routes) {
    if (r.path.includes("/:")) patterns.push({ route: r, segments: r.path.split("/") });
    else exact.set(r.path, r);
  }
  return (path) => {
    const r = exact.get(path);
    if (r) return { route: r, params: {} };
    const parts = path.split("/");
    for (const { route, segments } of patterns) {
      if (segments.length !== parts.length) continue;
      const params: Record<string, string> = {};
      const same = segments.every((s, i) => {
        const part = parts[i] ?? "";
        if (!s.startsWith(":")) return s === part;
        params[s.slice(1)] = part;
        return part !== "";
      });
      if (same) return { route, params };
    }
    return undefined;
  };
}

/**
 * GET /healthz. `status` and `degraded` are for anyone (load balancers, container healthchecks);
 * the rest names the target's version, the models and the queue depth, so it needs the token
 * unless server.health_detail opens it.
 */
export function health(d: HttpDeps, options: { detail: boolean }): Record<string, unknown> {
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
