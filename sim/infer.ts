// /api/chat and /api/generate up to the moment a generation may start: binding, the checks Ollama
// 0.11.4 makes in its own order (each route its own), loading through the scheduler, and the
// checks the runner makes once the model is loaded. answer.ts then produces the answer.

import { answer } from "./answer.ts";
import { bind, CHAT, formatError, GENERATE, optionsError } from "./bind.ts";
import type { ModelEntry } from "./catalog.ts";
import type { Core } from "./core.ts";
import { type Ctx, json } from "./http.ts";
import { longName } from "./names.ts";
import { goTime, now } from "./time.ts";

export type InferKind = "chat" | "generate";

/** A chat or generate request, bound and read. */
export interface InferRequest {
  kind: InferKind;
  /** The bound body. */
  body: Record<string, unknown>;
  /** The name as the caller wrote it, which every answer echoes. */
  model: string;
  messages: Record<string, unknown>[];
  prompt: string;
  /** No messages, or an empty prompt: the request only loads (or, with keep_alive 0, unloads). */
  empty: boolean;
  unload: boolean;
  think: boolean;
  tools: unknown[];
  options: Record<string, unknown> | undefined;
  keepAliveMs: number | undefined;
  /** Streamed unless the body says stream:false (null or absent is the default). */
  stream: boolean;
}

/** How a route other than the native one (a /v1 route) has the request scheduled. */
export interface ScheduleOptions {
  /** The keep-alive the runner gets, whatever the body says. */
  keepAliveMs?: number;
}

/** POST /api/chat or /api/generate with `text` as the body. */
export async function infer(
  core: Core,
  kind: InferKind,
  ctx: Ctx,
  text: string,
  opts: ScheduleOptions = {},
): Promise<Response> {
  const chat = kind === "chat";
  const b = bind(text, chat ? "api.ChatRequest" : "api.GenerateRequest", chat ? CHAT : GENERATE);
  if ("error" in b) return json(400, { error: b.error });
  const req = read(kind, b.value, b.keepAliveMs);
  const entry = await precheck(core, ctx, req);
  if (entry instanceof Response) return entry;
  const keepAliveMs = opts.keepAliveMs ?? req.keepAliveMs;
  const runner = await core.hold(entry.name, req.options, keepAliveMs, ctx.signal);
  if (runner instanceof Response) return runner;
  const loadedAt = performance.now();
  const refused = loadedRefusal(req);
  if (refused) {
    core.sched.release(runner);
    return refused;
  }
  try {
    await runner.slot.acquire(ctx.signal);
  } catch {
    core.sched.release(runner);
    return json(499, { error: "request canceled" });
  }
  return await answer({ core, ctx, req, name: entry.name, runner, loadedAt });
}

function read(
  kind: InferKind,
  r: Record<string, unknown>,
  keepAliveMs: number | undefined,
): InferRequest {
  const messages = (r.messages ?? []) as Record<string, unknown>[];
  const prompt = typeof r.prompt === "string" ? r.prompt : "";
  const empty = kind === "chat" ? messages.length === 0 : prompt === "";
  return {
    kind,
    body: r,
    model: typeof r.model === "string" ? r.model : "",
    messages,
    prompt,
    empty,
    unload: empty && keepAliveMs !== undefined && Math.trunc(keepAliveMs / 1000) === 0,
    think: r.think !== undefined && r.think !== null && r.think !== false,
    tools: Array.isArray(r.tools) ? r.tools : [],
    options: (r.options ?? undefined) as Record<string, unknown> | undefined,
    keepAliveMs,
    stream: r.stream !== false,
  };
}

/** The checks before scheduling, in Ollama 0.11.4's order. Both routes look a model up by name
 * first ("model 'x' not found"), except chat outside an unload, which asks the scheduler and gets
 * "model "x" not found, try pulling it first" (and "model is required" for no name). */
async function precheck(core: Core, ctx: Ctx, req: InferRequest): Promise<ModelEntry | Response> {
  const { kind, model } = req;
  const entry = model ? core.catalog.get(model) : undefined;
  if (model) core.log("request", entry?.name ?? model, ctx.path);
  if (!entry && (kind === "generate" || req.unload)) {
    return json(404, { error: `model '${model}' not found` });
  }
  if (req.unload && entry) {
    await core.sched.expire(entry.name);
    return doneOnly(req, "unload");
  }
  if (!model) return json(400, { error: "model is required" });
  if (!entry) {
    return json(404, { error: `model ${JSON.stringify(model)} not found, try pulling it first` });
  }
  return refusal(req, entry) ?? entry;
}

/** Raw mode, think levels, capabilities and option types, checked before anything loads. */
function refusal(req: InferRequest, entry: ModelEntry): Response | undefined {
  const { kind, body: r } = req;
  if (
    kind === "generate" && r.raw === true && (r.template || r.system || (r.context as [])?.length)
  ) {
    return json(400, { error: "raw mode does not support template, system, or context" });
  }
  // Levels are for gpt-oss only; generate refuses them at once, chat once the model is loaded.
  const level = thinkLevelError(req);
  if (kind === "generate" && level) return json(400, { error: level });
  const wanted = [
    "completion",
    ...(kind === "chat" && req.tools.length > 0 ? ["tools"] : []),
    ...(kind === "generate" && typeof r.suffix === "string" && r.suffix !== "" ? ["insert"] : []),
    ...(req.think ? ["thinking"] : []),
  ];
  const missing = wanted.filter((c) => !entry.capabilities.includes(c));
  if (missing.includes("completion")) {
    return json(400, { error: `${JSON.stringify(req.model)} does not support ${kind}` });
  }
  if (missing.length > 0) {
    // Go's errors.Join puts a newline between the missing capabilities.
    return json(400, { error: `${longName(entry.name)} does not support ${missing.join("\n")}` });
  }
  const badOption = optionsError(req.options);
  return badOption ? json(500, { error: badOption }) : undefined;
}

function thinkLevelError(req: InferRequest): string | undefined {
  const think = req.body.think;
  if (typeof think !== "string") return undefined;
  return `think value ${JSON.stringify(think)} is not supported for this model`;
}

/** What ends a request once its model is loaded, before it generates: a load-only request, a
 * think level on chat, and a format the runner rejects (a 500, or an error line when streaming). */
function loadedRefusal(req: InferRequest): Response | undefined {
  if (req.empty) return doneOnly(req, "load");
  const level = thinkLevelError(req);
  if (level) return json(400, { error: level });
  const badFormat = formatError(req.body.format);
  if (!badFormat) return undefined;
  if (!req.stream) return json(500, { error: badFormat });
  return new Response(JSON.stringify({ error: badFormat }) + "\n", {
    status: 200,
    headers: { "content-type": "application/x-ndjson" },
  });
}

/** The one-object answer of a load or unload request. */
function doneOnly(req: InferRequest, reason: "load" | "unload"): Response {
  const head = { model: req.model, created_at: goTime(now()) };
  return json(
    200,
    req.kind === "chat"
      ? { ...head, message: { role: "assistant", content: "" }, done_reason: reason, done: true }
      : { ...head, response: "", done: true, done_reason: reason },
  );
}
