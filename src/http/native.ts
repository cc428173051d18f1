// The native surface: foreman answers like an Ollama server. /api/chat and /api/generate become
// sync jobs run by the worker; embeddings, show, version and ps go straight to the target; tags
// come from the inventory; model management is refused unless the operator allows it. Nothing
// the target answers reaches a caller as a redirect, and its bodies are read under the timeout.

import type { Config } from "../config.ts";
import { errorMessage, type Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import {
  AnswerTooLargeError,
  type TargetClient,
  TargetHttpError,
  TargetUnreachableError,
} from "../ollama/client.ts";
import type { Inventory } from "../ollama/inventory.ts";
import { normalizeModel } from "../ollama/models.ts";
import type { Endpoint } from "../queue/states.ts";
import type { Store } from "../queue/store.ts";
import { relay } from "../worker/relay.ts";
import type { Worker } from "../worker/worker.ts";
import { readBody, readJsonObject } from "./body.ts";
import { errorJson, HttpError, jsonResponse } from "./errors.ts";
import { JOB_ID_HEADER, relayedResponse } from "./relayed.ts";
import { requireModel, requireRoom, validateInferenceBody } from "./validate.ts";

export interface NativeDeps {
  config: Config;
  store: Store;
  inventory: Inventory;
  worker: Worker;
  client: TargetClient;
  metrics: Metrics;
  log: Logger;
}

/** POST /api/chat and /api/generate: a sync job whose response streams once it is working. */
export async function queued(req: Request, endpoint: Endpoint, d: NativeDeps): Promise<Response> {
  const body = await readJsonObject(req, d.config);
  const model = validateInferenceBody(body, endpoint);
  await requireModel(d.inventory, model);
  requireRoom(d.store, { maxQueue: d.config.maxQueue });
  const job = d.store.insertJob({
    kind: "sync",
    endpoint,
    model: normalizeModel(model),
    request: JSON.stringify(body),
  });
  const response = Promise.withResolvers<Response>();
  d.worker.attach(job.id, {
    answer: (answer) => response.resolve(relayedResponse(answer, job.id)),
    fail: (f) => response.resolve(errorJson(f.status, f.message, { [JOB_ID_HEADER]: job.id })),
  });
  const leave = () => {
    d.worker.cancel(job.id, "caller went away").catch((err) => {
      // The cancel could not be written (a full disk): without a caller, the worker cancels the
      // job when it takes it instead. This handler must still end, or shutdown waits for it.
      d.worker.detach(job.id);
      response.resolve(errorJson(499, "request canceled"));
      d.log.warn("cannot cancel the job of a caller that left", {
        job_id: job.id,
        error: errorMessage(err),
      });
    });
  };
  req.signal.addEventListener("abort", leave, { once: true });
  d.worker.wake();
  return await response.promise;
}

/**
 * Relays a target response (minus hop-by-hop headers), its body under the target timeout: a
 * target that stalls mid-body, or a caller that stops reading, ends it.
 */
function relayed(res: Response, d: NativeDeps): Response {
  const body = res.body &&
    relay(res.body, { idleTimeout: d.client.timeout, ndjson: false }).readable;
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

/** POST /api/embed and /api/embeddings: never queued, concurrent with the worker. */
export async function embed(req: Request, path: string, d: NativeDeps): Promise<Response> {
  const body = await readJsonObject(req, d.config);
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
export async function show(req: Request, d: NativeDeps): Promise<Response> {
  const body = await readJsonObject(req, d.config);
  const model = body.model === undefined || body.model === null || body.model === ""
    ? body.name
    : body.model;
  if (model === undefined || model === null || model === "") {
    throw new HttpError(400, "model is required");
  }
  if (typeof model !== "string") throw new HttpError(400, "model must be a string");
  return await passthrough(req, "/api/show", d, { body: JSON.stringify(body) });
}

/** A route the target answers directly (show, version, and management when allowed). */
export async function passthrough(
  req: Request,
  path: string,
  d: NativeDeps,
  options: { limitBody?: boolean; body?: string } = {},
): Promise<Response> {
  let body: BodyInit | null = options.body ?? null;
  if (body === null && req.method !== "GET" && req.method !== "HEAD") {
    body = options.limitBody === false ? req.body : await readBody(req, d.config);
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

export async function tags(d: NativeDeps): Promise<Response> {
  if (d.inventory.snapshot.lastPoll === null && !(await d.inventory.refresh())) {
    throw new HttpError(503, "target unavailable and no model inventory known yet");
  }
  return jsonResponse(d.inventory.snapshot.tags);
}

/**
 * GET /api/ps live from the target, the last known answer when it cannot be reached (or stalls);
 * an error status from the target is relayed in Ollama's shape.
 */
export async function ps(req: Request, d: NativeDeps): Promise<Response> {
  try {
    const live = await d.client.json<{ models: [] }>("/api/ps", undefined, req.signal);
    d.inventory.updatePs(live);
    return jsonResponse(live);
  } catch (err) {
    if (!(err instanceof TargetUnreachableError)) return targetError(err);
    return jsonResponse(d.inventory.snapshot.ps, 200, { "x-foreman-cached": "true" });
  }
}

export async function version(req: Request, d: NativeDeps): Promise<Response> {
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

export function management(req: Request, path: string, d: NativeDeps): Promise<Response> {
  if (!d.config.allowModelManagement) {
    throw new HttpError(
      403,
      `model management (${path}) is disabled on this foreman: set ` +
        `target.allow_model_management = true (FOREMAN_ALLOW_MODEL_MANAGEMENT=1) to allow it`,
    );
  }
  return passthrough(req, path + new URL(req.url).search, d, { limitBody: false });
}
