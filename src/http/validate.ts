// The checks a request passes before it becomes a job, shared by the native surface, /v1 and /jobs:
// the fields foreman relies on (and the types the API documents), the model known at the target,
// and room in the queue. Each failure is an HttpError naming the offending field; the router gives
// it the shape of the route's surface.

import type { Inventory } from "../ollama/inventory.ts";
import { type Endpoint, isOpenAI } from "../queue/states.ts";
import type { Store } from "../queue/store.ts";
import { parseDuration } from "../units.ts";
import { HttpError } from "./errors.ts";

/**
 * Validates the fields foreman relies on and returns the model; everything else is the target's
 * business. A /v1 body is checked as OpenAI's API defines it (validateOpenAIBody).
 */
export function validateInferenceBody(body: Record<string, unknown>, endpoint: Endpoint): string {
  const model = requireModelName(body);
  if (isOpenAI(endpoint)) {
    validateOpenAIBody(body, endpoint);
    return model;
  }
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

function requireModelName(body: Record<string, unknown>): string {
  const model = body.model;
  if (model === undefined || model === null || model === "") {
    throw new HttpError(400, "model is required");
  }
  if (typeof model !== "string") throw new HttpError(400, "model must be a string");
  if (model.length > 512) throw new HttpError(400, "model name is too long");
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

const isInteger = (v: unknown) => Number.isInteger(v);
const isNumber = (v: unknown) => typeof v === "number" && Number.isFinite(v);
/** OpenAI's optional fields take null for absent, as Ollama's Go binding does. */
const orNull = (ok: (v: unknown) => boolean) => (v: unknown) => v === null || ok(v);

/**
 * The fields of an OpenAI chat or completion body that Ollama's /v1 binds, with their types; a
 * mistake gets foreman's 400 before the job is queued instead of the target's once it runs.
 */
const OPENAI_FIELDS: [string, (v: unknown) => boolean, string][] = [
  ["stream", orNull((v) => typeof v === "boolean"), "true or false"],
  ["stream_options", orNull(isObject), "an object"],
  ["max_tokens", orNull(isInteger), "an integer"],
  ["seed", orNull(isInteger), "an integer"],
  ["temperature", orNull(isNumber), "a number"],
  ["top_p", orNull(isNumber), "a number"],
  ["frequency_penalty", orNull(isNumber), "a number"],
  ["presence_penalty", orNull(isNumber), "a number"],
  ["stop", orNull((v) => isString(v) || arrayOf(isString)(v)), "a string or an array of strings"],
];

const OPENAI_CHAT_FIELDS: [string, (v: unknown) => boolean, string][] = [
  ["response_format", orNull(isObject), "an object"],
  ["tools", orNull(arrayOf(isObject)), "an array of objects"],
];

const OPENAI_COMPLETION_FIELDS: [string, (v: unknown) => boolean, string][] = [
  ["suffix", orNull(isString), "a string"],
];

/** 400 naming the first field of a /v1 chat or completion body that OpenAI's API would refuse. */
function validateOpenAIBody(
  body: Record<string, unknown>,
  endpoint: "openai.chat" | "openai.completions",
): void {
  if (endpoint === "openai.chat") {
    const { messages } = body;
    if (messages === undefined || messages === null) {
      throw new HttpError(400, "messages is required: an array of message objects");
    }
    if (!Array.isArray(messages)) {
      throw new HttpError(
        400,
        "invalid request body: messages must be an array of message objects",
      );
    }
    if (messages.length === 0) throw new HttpError(400, "messages must not be empty");
    messages.forEach((m, i) => {
      if (!isObject(m) || typeof (m as { role?: unknown }).role !== "string") {
        throw new HttpError(
          400,
          `invalid request body: messages[${i}] must be an object with a string role`,
        );
      }
    });
  } else {
    const { prompt } = body;
    if (prompt === undefined || prompt === null || prompt === "") {
      throw new HttpError(400, "prompt is required");
    }
    if (typeof prompt !== "string") {
      throw new HttpError(400, "invalid request body: prompt must be a string");
    }
  }
  checkFields(body, OPENAI_FIELDS, "");
  checkFields(
    body,
    endpoint === "openai.chat" ? OPENAI_CHAT_FIELDS : OPENAI_COMPLETION_FIELDS,
    "",
  );
  const include = (body.stream_options as { include_usage?: unknown } | null | undefined)
    ?.include_usage;
  if (include !== undefined && include !== null && typeof include !== "boolean") {
    throw new HttpError(
      400,
      "invalid request body: stream_options.include_usage must be true or false",
    );
  }
}

/** A message's content: text natively; OpenAI's also takes content parts, or null beside tool calls. */
const CONTENT: Record<"native" | "openai", [string, (v: unknown) => boolean, string]> = {
  native: ["content", isString, "a string"],
  openai: [
    "content",
    (v) => v === null || isString(v) || arrayOf(isObject)(v),
    "a string, an array of content parts or null",
  ],
};

/**
 * 400 naming the first field of a job's payload whose type is not the one docs/openapi.yaml
 * gives it. The Ollama fields are held to their types whatever the endpoint (Ollama's /v1 ignores
 * them), so one job schema describes what /jobs refuses.
 */
export function validateJobFields(request: Record<string, unknown>, endpoint: Endpoint): void {
  checkFields(request, FIELDS, "");
  const content = CONTENT[isOpenAI(endpoint) ? "openai" : "native"];
  const messages = Array.isArray(request.messages) ? request.messages : [];
  messages.forEach((m, i) => checkFields(m, [content, ...MESSAGE_FIELDS], `messages[${i}].`));
}
