// The native surface: foreman answers like an Ollama server. /api/chat and /api/generate become
// sync jobs run by the worker; embeddings, show, version and ps go straight to the target; tags
// come from the inventory; model management is refused unless the operator allows it. Nothing
// the target answers reaches a caller as a redirect, and its bodies are read under the timeout.

import { errorMessage } from "../log.ts";
import { AnswerTooLargeError, TargetHttpError, TargetUnreachableError } from "../ollama/client.ts";
import { normalizeModel } from "../ollama/models.ts";
import type { Endpoint } from "../queue/states.ts";
import { relay } from "../worker/relay.ts";
import { readBody, readJsonObject } from "./body.ts";
import type { HttpDeps } from "./deps.ts";
import { HttpError, jsonResponse } from "./errors.ts";
import { JOB_ID_HEADER, relayedResponse } from "./relayed.ts";
import { requireModel, requireRoom, validateInferenceBody } from "./validate.ts";

/**
 * POST /api/chat and /api/generate, and /v1's chat and completions: a sync job whose response
 * streams once it is working. A failure before the answer is thrown as HttpError, so the router
 * gives it the shape of the caller's surface.
 */
export async function queued(
  req: Request,
  d: HttpDeps,
  options: { endpoint: Endpoint },
): Promise<Response> {
  const { endpoint } = options;
  // Deno notices a caller's closed connection only once req.signal has been read: read before
  // any await, it knows a caller who left during the checks below, and no job is made for them.
  const { signal } = req;
  const body = await readJsonObject(req, d.settings);
  const model = validateInferenceBody(body, endpoint);
  await requireModel(d.inventory, model);
  requireRoom(d.store, { maxQueue: d.settings.maxQueue });
  // Nothing awaits from here to the listener below, so no abort can slip in between.
  if (signal.aborted) throw new HttpError(499, "request canceled");
  const response = Promise.withResolvers<Response>();
  // The worker answers only after submit has returned, so `job` is set by then.
  const job = d.worker.submit({
    kind: "sync",
    endpoint,
    model: normalizeModel(model),
    request: JSON.stringify(body),
  }, {
    answer: (answer) => response.resolve(relayedResponse(answer, job.id)),
    fail: (f) => response.reject(new HttpError(f.status, f.message, { [JOB_ID_HEADER]: job.id })),
  });
  const leave = () => {
    d.worker.cancel(job.id, "caller went away").catch((err) => {
      // The cancel could not be written (a full disk): without a caller, the worker cancels the
      // job when it takes it instead. This handler must still end, or shutdown waits for it.
      d.worker.detach(job.id);
      response.reject(new HttpError(499, "request canceled"));
      d.log.warn("cannot cancel the job of a caller that left", {
        job_id: job.id,
        error: errorMessage(err),
      });
    });
  };
  signal.addEventListener("abort", leave, { once: true });
  return await response.promise;
}

/**
 * Relays a target response (minus hop-by-hop headers), its body under the target timeout: a
 * target that stalls mid-body, or a caller that stops reading, ends it.
 */
function relayed(res: Response, d: HttpDeps): Response {
  const body = res.body &&
    relay(res.body, { idleTimeout: d.client.timeout, framing: "bytes" }).readable;
  return relayedResponse({ status: res.status, headers: res.headers, body });
}

/**
 * A failure to get an answer from the target, in Ollama's shape: 503 when it cannot be reached,
 * its own status when it answered one, 502 when its answer is past target.max_answer.
 */
function targetError(err: unknown): never {
  if (err instanceof TargetUnreachableError) {
    throw new HttpError(503, `target unavailable: ${err.message}`);
  }
  if (err instanceof TargetHttpError) throw new HttpError(err.status, err.message);
  if (err instanceof AnswerTooLargeError) throw new HttpError(502, err.message);
  throw err;
}

/** POST /api/embed, /api/embeddings and /v1/embeddings: never queued, concurrent with the worker. */
export async function embed(
  req: Request,
  d: HttpDeps,
  options: { path: string },
): Promise<Response> {
  const { path } = options;
  const body = await readJsonObject(req, d.settings);
  if (typeof body.model !== "string" || body.model === "") {
    throw new HttpError(400, "model is required");
  }
  try {
    const res = await d.client.fetch(path, {
      method: "POST",
      body: JSON.stringify(body),
      contentType: "application/json",
      signal: req.signal,
    });
    d.metrics.embedRequests.inc({ route: path, status: String(res.status) });
    return relayed(res, d);
  } catch (err) {
    const status = err instanceof TargetHttpError ? err.status : 503;
    d.metrics.embedRequests.inc({ route: path, status: String(status) });
    return targetError(err);
  }
}

/**
 * POST /api/show, passed through. Like Ollama it takes the older `name` field instead of `model`
 * (LiteLLM sends it); whichever is present is checked, and the target gets the fields as sent.
 */
export async function show(req: Request, d: HttpDeps): Promise<Response> {
  const body = await readJsonObject(req, d.settings);
  const model = body.model === undefined || body.model === null || body.model === ""
    ? body.name
    : body.model;
  if (model === undefined || model === null || model === "") {
    throw new HttpError(400, "model is required");
  }
  if (typeof model !== "string") throw new HttpError(400, "model must be a string");
  return await passthrough(req, d, { path: "/api/show", body: JSON.stringify(body) });
}

/** A route the target answers directly (show, version, and management when allowed). */
export async function passthrough(
  req: Request,
  d: HttpDeps,
  options: {
    /** The target's path (and query). */
    path: string;
    /** Whether the caller's body is read under server.max_body first (default true). */
    limitBody?: boolean;
    /** A body to send instead of the caller's, as JSON. */
    body?: string;
  },
): Promise<Response> {
  const { path } = options;
  let body: BodyInit | null = options.body ?? null;
  if (body === null && req.method !== "GET" && req.method !== "HEAD") {
    body = options.limitBody === false ? req.body : await readBody(req, d.settings);
  }
  try {
    const res = await d.client.fetch(path, {
      method: req.method,
      body,
      contentType: options.body === undefined
        ? req.headers.get("content-type")
        : "application/json",
      signal: req.signal,
    });
    return relayed(res, d);
  } catch (err) {
    return targetError(err);
  }
}

export async function tags(d: HttpDeps): Promise<Response> {
  if (d.inventory.snapshot.lastPoll === null && !(await d.inventory.refresh())) {
    throw new HttpError(503, "target unavailable and no model inventory known yet");
  }
  return jsonResponse(d.inventory.snapshot.tags);
}

/**
 * GET /api/ps live from the target, the last known answer when it cannot be reached (or stalls);
 * an error status from the target is relayed in Ollama's shape.
 */
export async function ps(req: Request, d: HttpDeps): Promise<Response> {
  try {
    const live = await d.client.json<{ models: [] }>("/api/ps", { signal: req.signal });
    d.inventory.updatePs(live);
    return jsonResponse(live);
  } catch (err) {
    if (!(err instanceof TargetUnreachableError)) return targetError(err);
    return jsonResponse(d.inventory.snapshot.ps, 200, { "x-foreman-cached": "true" });
  }
}

export async function version(req: Request, d: HttpDeps): Promise<Response> {
  try {
    return relayed(
      await d.client.fetch("/api/version", { method: req.method, signal: req.signal }),
      d,
    );
  } catch (err) {
    const known = d.inventory.snapshot.version;
    if (known && err instanceof TargetUnreachableError) {
      return jsonResponse({ version: known }, 200, { "x-foreman-cached": "true" });
    }
    return targetError(err);
  }
}

export const MANAGEMENT_ROUTES = [
  "/api/pull",
  "/api/push",
  "/api/create",
  "/api/copy",
  "/api/delete",
];

export function management(
  req: Request,
  d: HttpDeps,
  options: { path: string },
): Promise<Response> {
  const { path } = options;
  if (!d.settings.allowModelManagement) {
    throw new HttpError(
      403,
      `model management (${path}) is disabled on this foreman: set ` +
        `target.allow_model_management = true (FOREMAN_ALLOW_MODEL_MANAGEMENT=1) to allow it`,
    );
  }
  return passthrough(req, d, { path: path + new URL(req.url).search, limitBody: false });
}
