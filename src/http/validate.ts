// The checks a request passes before it becomes a job, shared by the native surface and /jobs: the
// fields foreman relies on (and the types the API documents), the model known at the target, and
// room in the queue. Each failure is an HttpError in Ollama's shape naming the offending field.

import type { Inventory } from "../ollama/inventory.ts";
import type { Endpoint } from "../queue/states.ts";
import type { Store } from "../queue/store.ts";
import { parseDuration } from "../units.ts";
import { HttpError } from "./errors.ts";

/** Validates the fields foreman relies on; everything else is the target's business. */
export function validateInferenceBody(body: Record<string, unknown>, endpoint: Endpoint): string {
  const model = body.model;
  if (model === undefined || model === null || model === "") {
    throw new HttpError(400, "model is required");
  }
  if (typeof model !== "string") throw new HttpError(400, "model must be a string");
  if (model.length > 512) throw new HttpError(400, "model name is too long");
  // null is the default (streamed), as in Ollama.
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== "boolean") {
    throw new HttpError(400, "stream must be true or false");
  }
  if (endpoint === "chat" && body.messages !== undefined && !Array.isArray(body.messages)) {
    throw new HttpError(400, "messages must be an array");
  }
  if (endpoint === "chat" && Array.isArray(body.messages)) {
    for (const m of body.messages) {
      if (
        typeof m !== "object" || m === null || typeof (m as { role?: unknown }).role !== "string"
      ) {
        throw new HttpError(400, "each message must be an object with a role");
      }
    }
  }
  if (endpoint === "generate" && body.prompt !== undefined && typeof body.prompt !== "string") {
    throw new HttpError(400, "prompt must be a string");
  }
  if (
    body.options !== undefined &&
    (typeof body.options !== "object" || body.options === null || Array.isArray(body.options))
  ) {
    throw new HttpError(400, "options must be an object");
  }
  if (isUnloadRequest(body, endpoint)) {
    throw new HttpError(
      409,
      `cannot unload model "${model}": foreman manages model residency and unloads models ` +
        `itself when the worker switches models (keep_alive 0 with an empty prompt is refused)`,
    );
  }
  return model;
}

/**
 * What `ollama stop` sends: keep_alive 0 with nothing to generate. Ollama unloads the model at once;
 * foreman refuses, since honouring it would fight the worker's residency (and answering it as a
 * load, as running it as a job does, would be untrue).
 */
function isUnloadRequest(body: Record<string, unknown>, endpoint: Endpoint): boolean {
  const k = body.keep_alive;
  const zero = k === 0 || (typeof k === "string" && parseDuration(k) === 0);
  if (!zero) return false;
  if (endpoint === "chat") {
    return body.messages === undefined || body.messages === null ||
      (Array.isArray(body.messages) && body.messages.length === 0);
  }
  return body.prompt === undefined || body.prompt === null || body.prompt === "";
}

/** 404 in Ollama's words unless the target has `model`; one fresh poll before saying no. */
export async function requireModel(inventory: Inventory, model: string): Promise<void> {
  if (inventory.has(model)) return;
  const reached = await inventory.refresh();
  // A target that cannot be asked is no reason to refuse work (degraded mode).
  if (!reached || inventory.has(model) !== false) return;
  throw new HttpError(404, `model "${model}" not found, try pulling it first`);
}

/**
 * 503 when the queue is full. `pending` counts jobs accepted but not yet committed (group commit),
 * which hold a place in the queue already.
 */
export function requireRoom(store: Store, options: { maxQueue: number; pending?: number }): void {
  const { maxQueue, pending = 0 } = options;
  if (store.countQueued() + pending >= maxQueue) {
    throw new HttpError(
      503,
      `server busy, please try again: the queue holds ${maxQueue} jobs (FOREMAN_MAX_QUEUE)`,
    );
  }
}

const isString = (v: unknown) => typeof v === "string";
const isObject = (v: unknown) => typeof v === "object" && v !== null && !Array.isArray(v);
const arrayOf = (item: (v: unknown) => boolean) => (v: unknown) =>
  Array.isArray(v) && v.every(item);

/**
 * The Ollama fields of a job body with the type docs/openapi.yaml gives them, checked at submit
 * whatever the endpoint: a job with a mistake gets its 400 now, not a failed job later. (The
 * shared checks in validateInferenceBody come first: model, messages' roles, prompt, options.)
 */
const FIELDS: [string, (v: unknown) => boolean, string][] = [
  ["messages", arrayOf(isObject), "an array of message objects"],
  ["tools", arrayOf(isObject), "an array of objects"],
  ["prompt", isString, "a string"],
  ["system", isString, "a string"],
  ["images", arrayOf(isString), "an array of base64 strings"],
  ["format", (v) => isString(v) || isObject(v), '"json" or a JSON schema object'],
  ["options", isObject, "an object"],
  [
    "think",
    (v) => typeof v === "boolean" || ["low", "medium", "high"].includes(v as string),
    'true, false, "low", "medium" or "high"',
  ],
  ["keep_alive", (v) => typeof v === "number" || isString(v), "a number or a duration string"],
];

const MESSAGE_FIELDS: [string, (v: unknown) => boolean, string][] = [
  ["content", isString, "a string"],
  ["thinking", isString, "a string"],
  ["images", arrayOf(isString), "an array of base64 strings"],
  ["tool_calls", arrayOf(isObject), "an array of objects"],
  ["tool_name", isString, "a string"],
];

function checkFields(
  body: Record<string, unknown>,
  fields: [string, (v: unknown) => boolean, string][],
  where: string,
): void {
  for (const [name, ok, expected] of fields) {
    if (name in body && !ok(body[name])) {
      throw new HttpError(400, `invalid request body: ${where}${name} must be ${expected}`);
    }
  }
}

/** 400 naming the first field of a job's Ollama payload whose type is not the documented one. */
export function validateJobFields(request: Record<string, unknown>): void {
  checkFields(request, FIELDS, "");
  const messages = Array.isArray(request.messages) ? request.messages : [];
  messages.forEach((m, i) => checkFields(m, MESSAGE_FIELDS, `messages[${i}].`));
}
