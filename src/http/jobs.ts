// The async surface: POST /jobs answers with a job ID at once; the job runs through the same queue
// and worker as a sync request; its state changes go to the caller's webhook, or to a caller who
// watches it (long poll, event stream; watch.ts); results and artifacts stay readable until the
// retention period ends.

import { createHash } from "node:crypto";
import { normalizeModel } from "../ollama/models.ts";
import {
  type Endpoint,
  ENDPOINTS,
  isTerminal,
  JOB_STATES,
  type JobState,
} from "../queue/states.ts";
import type { JobEvent, ListFilter, MovedJob } from "../queue/store.ts";
import { eventBody, jobView } from "../views.ts";
import { webhookUrlProblem } from "../webhooks/policy.ts";
import { parseJsonObject, readBody } from "./body.ts";
import { HttpError, jsonResponse } from "./errors.ts";
import type { HttpDeps } from "./deps.ts";
import { requireModel, requireRoom, validateInferenceBody, validateJobFields } from "./validate.ts";
import { requestedWait } from "./watch.ts";

/**
 * A ULID in Crockford base32: 26 characters, the first at most 7 (48 bits of time). Crockford
 * decoding ignores case, so a lower-case ID names the same job; docs/openapi.yaml says so too.
 */
const ULID = /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/;

/** The canonical (upper-case) job ID, or 400 naming what was given. */
export function parseJobId(raw: string, what = "job id"): string {
  const id = raw.toUpperCase();
  if (!ULID.test(id)) {
    throw new HttpError(400, `invalid ${what} '${raw.slice(0, 64)}': expected a ULID`);
  }
  return id;
}

/**
 * Job `raw` as its view shows it (Store.shown): never its request, its result only when the view
 * inlines it. Reading a job costs what its answer holds, however large the job.
 */
function findJob(d: HttpDeps, raw: string): MovedJob {
  const job = d.store.shown(parseJobId(raw), d.views.inlineLimit);
  if (!job) throw new HttpError(404, `job ${raw} not found`);
  return job;
}

export function renderJob(d: HttpDeps, job: MovedJob): Record<string, unknown> {
  return jobView(job, {
    // Only the bytes the view inlines are read: an artifact of MiB is a URL.
    artifacts: job.state === "done" ? d.store.artifacts.shown(job.id, d.views.inlineLimit) : [],
    position: d.store.position(job, d.residency.current),
    webhook: d.store.outbox.summary(job.id),
  }, d.views);
}

/** POST /jobs */
export async function submit(req: Request, d: HttpDeps): Promise<Response> {
  // The bytes as sent are kept: an Idempotency-Key is checked against their hash.
  const bytes = await readBody(req, d.settings);
  const body = parseJsonObject(bytes);
  const {
    state_webhook_url: webhook,
    metadata,
    endpoint: rawEndpoint,
    stream: _ignored,
    ...request
  } = body;
  const endpoint = (rawEndpoint ?? "chat") as Endpoint;
  if (!ENDPOINTS.includes(endpoint)) {
    throw new HttpError(
      400,
      `endpoint must be one of ${ENDPOINTS.map((e) => `"${e}"`).join(", ")}`,
    );
  }
  const model = validateInferenceBody(request, endpoint);
  validateJobFields(request, endpoint);
  if (webhook !== undefined && webhook !== null) {
    if (typeof webhook !== "string") throw new HttpError(400, "state_webhook_url must be a string");
    const problem = webhookUrlProblem(webhook, d.settings.webhookHosts);
    if (problem) throw new HttpError(400, problem);
  }
  if (
    metadata !== undefined && metadata !== null &&
    (typeof metadata !== "object" || Array.isArray(metadata))
  ) {
    throw new HttpError(400, "metadata must be a JSON object");
  }
  // Metadata is echoed in every event and every list page: the body limit alone is too loose.
  const metadataJson = metadata ? JSON.stringify(metadata) : null;
  const metadataBytes = metadataJson === null
    ? 0
    : new TextEncoder().encode(metadataJson).byteLength;
  if (metadataBytes > d.settings.maxMetadata) {
    throw new HttpError(
      400,
      `metadata too large: ${metadataBytes} bytes as JSON, over the limit of ` +
        `${d.settings.maxMetadata} bytes set by jobs.max_metadata (FOREMAN_MAX_METADATA)`,
    );
  }
  const key = req.headers.get("idempotency-key");
  if (key !== null && (key.length === 0 || key.length > 255)) {
    throw new HttpError(400, "Idempotency-Key must be 1 to 255 characters");
  }
  const hash = key === null ? null : createHash("sha256").update(bytes).digest("hex");
  await requireModel(d.inventory, model);

  // From here on no await: the idempotency look-up and the insert cannot interleave with another.
  if (key !== null) {
    const prior = d.store.findByIdempotencyKey(key);
    if (prior) {
      if (prior.requestHash !== hash) {
        throw new HttpError(409, "Idempotency-Key was already used with a different request body");
      }
      return accepted(prior, { "idempotent-replayed": "true" });
    }
  }
  requireRoom(d.store, { maxQueue: d.settings.maxQueue, pending: d.groupCommit.pending });
  const input = {
    kind: "async",
    endpoint,
    model: normalizeModel(model),
    request: JSON.stringify(request),
    webhookUrl: typeof webhook === "string" ? webhook : null,
    metadata: metadataJson,
    idempotencyKey: key,
    requestHash: hash,
  } as const;
  // A keyed submission commits alone and at once, so its look-up and insert stay back to back.
  const job = key === null ? await d.groupCommit.insert(input) : d.store.insertJob(input);
  d.worker.wake();
  d.dispatcher.wake();
  return accepted(job);
}

function accepted(job: { id: string }, headers: Record<string, string> = {}): Response {
  return jsonResponse({ job_id: job.id }, 202, { location: `/jobs/${job.id}`, ...headers });
}

/**
 * GET /jobs/{id}, and with `?wait=` (or `Prefer: wait=`) a long poll: a job that is not finished
 * is answered once it changes state or the wait runs out (ADR-0017).
 */
export function get(
  req: Request,
  d: HttpDeps,
  options: { id: string; url: URL },
): Response | Promise<Response> {
  const wait = requestedWait(req, options.url);
  const job = findJob(d, options.id);
  if (wait === 0 || isTerminal(job.state)) return jsonResponse(renderJob(d, job));
  // Only the id waits (this function's frame is gone by then): a thousand long polls do not hold
  // a thousand copies of a job's metadata.
  return waitThenRender(d, job.id, { ms: wait, signal: req.signal });
}

async function waitThenRender(
  d: HttpDeps,
  id: string,
  options: { ms: number; signal: AbortSignal },
): Promise<Response> {
  await d.watchers.waitForChange(id, options);
  // A job is pruned only long after it ended, so it is still there.
  return jsonResponse(renderJob(d, findJob(d, id)));
}

/**
 * GET /jobs/{id}/events: the job's events as Server-Sent Events (ADR-0017). Without Last-Event-ID
 * (the header, or `?last_event_id=` for clients that cannot set one) it starts with the latest
 * event; with one, it replays what came after it. An id that is not one of this job's events is
 * 400: starting over would repeat events the client has handled. A finished job with nothing after
 * the id is 204, which tells an EventSource to stop reconnecting.
 */
export function events(req: Request, d: HttpDeps, options: { id: string; url: URL }): Response {
  const job = findJob(d, options.id);
  const lastId = req.headers.get("last-event-id") || options.url.searchParams.get("last_event_id");
  let initial: JobEvent[];
  let seq: number;
  let more = false;
  if (lastId) {
    const after = d.store.outbox.eventSeq(job.id, lastId);
    if (after === undefined) {
      throw new HttpError(
        400,
        `invalid Last-Event-ID '${lastId.slice(0, 64)}': not an event of job ${job.id}`,
      );
    }
    // A page of what came after it: the rest is read as the reader takes it, so an old id on a
    // job with a long history holds a page in memory, not the history.
    ({ events: initial, more } = d.watchers.page(job.id, after));
    seq = after;
    if (initial.length === 0 && isTerminal(job.state)) return new Response(null, { status: 204 });
  } else {
    const latest = d.store.outbox.latestEvent(job.id);
    initial = latest ? [latest] : [];
    seq = latest?.seq ?? 0;
  }
  const headers = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    // nginx would otherwise buffer the stream and deliver its events late, all at once.
    "x-accel-buffering": "no",
  };
  if (req.method === "HEAD") return new Response(null, { headers });
  // A job from before schema 5 may have no event yet: it is shown as it is, without an id.
  const synthetic = lastId || initial.length > 0 ? undefined : eventBody(job, {
    previous: null,
    artifacts: job.state === "done" ? d.store.artifacts.shown(job.id, d.views.inlineLimit) : [],
  }, d.views);
  const body = d.watchers.stream(job.id, { seq, initial, more, synthetic, state: job.state });
  return new Response(body, { headers });
}

/** A list filter as the query gives it; the metadata limit is the server's. */
type ListQuery = Omit<ListFilter, "metadataLimit">;

/**
 * The query of GET /jobs. A parameter given empty (`?state=`) is refused like any other bad value,
 * never read as absent: a client that meant to filter must not get everything back.
 */
export function parseListQuery(q: URLSearchParams): ListQuery {
  const state = q.get("state") ?? undefined;
  if (state !== undefined && !JOB_STATES.includes(state as JobState)) {
    throw new HttpError(
      400,
      `invalid state '${state.slice(0, 64)}': must be one of ${JOB_STATES.join(", ")}`,
    );
  }
  const model = q.get("model") ?? undefined;
  if (model === "") throw new HttpError(400, "invalid model '': must not be empty");
  const limitText = q.get("limit") ?? "50";
  const limit = Number(limitText);
  if (!/^\d+$/.test(limitText) || limit < 1 || limit > 500) {
    throw new HttpError(
      400,
      `invalid limit '${limitText.slice(0, 64)}': must be a whole number from 1 to 500`,
    );
  }
  const before = q.get("before");
  return {
    state: state as JobState | undefined,
    model: model === undefined ? undefined : normalizeModel(model),
    before: before === null ? undefined : parseJobId(before, "before"),
    limit,
  };
}

/** GET /jobs?state=&model=&limit=&before= */
export function list(url: URL, d: HttpDeps): Response {
  const { state, model, before, limit } = parseListQuery(url.searchParams);
  const jobs = d.store.list({
    state,
    model,
    before,
    limit: limit + 1,
    metadataLimit: d.views.inlineLimit,
  });
  const page = jobs.slice(0, limit);
  // A page costs a constant number of queries and no bodies, whatever its length and its jobs'
  // sizes: GET /jobs/{id} and the artifact URLs have the rest.
  const ids = page.map((j) => j.id);
  const positions = d.store.positions(page, d.residency.current);
  const artifacts = d.store.artifacts.of(page.filter((j) => j.state === "done").map((j) => j.id));
  const webhooks = d.store.outbox.summaries(ids);
  return jsonResponse({
    jobs: page.map((j) =>
      jobView(j, {
        artifacts: artifacts.get(j.id) ?? [],
        position: positions.get(j.id) ?? null,
        webhook: webhooks.get(j.id) ?? null,
      }, d.views)
    ),
    next: jobs.length > limit ? page.at(-1)?.id ?? null : null,
  });
}

/** DELETE /jobs/{id}: cancel a queued job, abort a running one. */
export async function cancel(id: string, d: HttpDeps): Promise<Response> {
  const job = findJob(d, id);
  if (isTerminal(job.state)) {
    throw new HttpError(409, `job ${job.id} is already ${job.state}`);
  }
  const after = await d.worker.cancel(job.id, "cancelled by DELETE /jobs/{id}");
  d.dispatcher.wake();
  if (after && after.state !== "cancelled") {
    throw new HttpError(409, `job ${job.id} is already ${after.state}`);
  }
  return jsonResponse(renderJob(d, after!));
}

/** GET /jobs/{id}/artifacts/{name}: the bytes; the name is only ever a database key. */
export function artifact(
  req: Request,
  d: HttpDeps,
  params: { id: string; name: string },
): Response {
  const job = findJob(d, params.id);
  let name: string;
  try {
    name = decodeURIComponent(params.name);
  } catch {
    throw new HttpError(400, "invalid artifact name");
  }
  const a = d.store.artifacts.get(job.id, name);
  if (!a) throw new HttpError(404, `job ${job.id} has no artifact '${name.slice(0, 128)}'`);
  const etag = `"${a.sha256}"`;
  const headers = {
    "content-type": a.contentType,
    etag,
    "cache-control": "private, max-age=0",
  };
  const match = req.headers.get("if-none-match");
  if (match !== null && match.split(",").some((t) => t.trim() === etag || t.trim() === "*")) {
    return new Response(null, { status: 304, headers });
  }
  return new Response(req.method === "HEAD" ? null : a.body, {
    headers: { ...headers, "content-length": String(a.size) },
  });
}
