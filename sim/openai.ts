// Ollama 0.11.4's OpenAI-compatible routes (openai/openai.go and the routes that use it): a
// middleware binds the OpenAI body and turns it into a native request, the native handler runs it
// (same scheduler, same one-at-a-time slot, same faults), and openai_reply.ts writes the answer
// back in OpenAI's shape. No /v1 body carries keep_alive, and the simulator gives the runner the
// default keep-alive whatever it was pinned to before, as a real v0.11.4 was seen to (see
// shared/ollama-api.md), so a proxy that pins residency must pin again after a /v1 call.

import { decode, goTypeName, type Shape, type Struct } from "./bind.ts";
import type { Core } from "./core.ts";
import { embed } from "./embed.ts";
import { bodyText, type Ctx, text } from "./http.ts";
import { infer } from "./infer.ts";
import { namespaceOf } from "./names.ts";
import { addMessage } from "./openai_messages.ts";
import {
  apiError,
  chatWriter,
  completionWriter,
  encoded,
  invalid,
  relayError,
  reply,
} from "./openai_reply.ts";

type Obj = Record<string, unknown>;

const STREAM_OPTIONS: Struct = {
  name: "StreamOptions",
  goType: "openai.StreamOptions",
  shape: { include_usage: ["bool", "bool"] },
};
const FUNCTION: Struct = {
  name: "",
  goType: 'struct { Name string "json:\\"name\\""; Arguments string "json:\\"arguments\\"" }',
  shape: { name: ["string", "string"], arguments: ["string", "string"] },
};
const TOOL_CALL: Struct = {
  name: "ToolCall",
  goType: "openai.ToolCall",
  shape: {
    id: ["string", "string"],
    index: ["integer", "int"],
    type: ["string", "string"],
    function: ["object", FUNCTION.goType, FUNCTION],
  },
};
const MESSAGE: Struct = {
  name: "Message",
  goType: "openai.Message",
  shape: {
    role: ["string", "string"],
    content: ["any", ""],
    reasoning: ["string", "string"],
    tool_calls: ["array", "[]openai.ToolCall", TOOL_CALL],
    name: ["string", "string"],
    tool_call_id: ["string", "string"],
  },
};
const RESPONSE_FORMAT: Struct = {
  name: "ResponseFormat",
  goType: "openai.ResponseFormat",
  shape: {
    type: ["string", "string"],
    json_schema: ["object", "openai.JsonSchema", {
      name: "JsonSchema",
      goType: "openai.JsonSchema",
      shape: { schema: ["any", ""] },
    }],
  },
};
const REASONING: Struct = {
  name: "Reasoning",
  goType: "openai.Reasoning",
  shape: { effort: ["string", "string"] },
};

/** openai.ChatCompletionRequest. */
const CHAT_V1: Shape = {
  model: ["string", "string"],
  messages: ["array", "[]openai.Message", MESSAGE],
  stream: ["bool", "bool"],
  stream_options: ["object", STREAM_OPTIONS.goType, STREAM_OPTIONS],
  max_tokens: ["integer", "int"],
  seed: ["integer", "int"],
  stop: ["any", ""],
  temperature: ["number", "float64"],
  frequency_penalty: ["number", "float64"],
  presence_penalty: ["number", "float64"],
  top_p: ["number", "float64"],
  response_format: ["object", RESPONSE_FORMAT.goType, RESPONSE_FORMAT],
  tools: ["array", "[]api.Tool"],
  reasoning: ["object", REASONING.goType, REASONING],
};

/** openai.CompletionRequest. */
const COMPLETION_V1: Shape = {
  model: ["string", "string"],
  prompt: ["string", "string"],
  frequency_penalty: ["number", "float32"],
  max_tokens: ["integer", "int"],
  presence_penalty: ["number", "float32"],
  seed: ["integer", "int"],
  stop: ["any", ""],
  stream: ["bool", "bool"],
  stream_options: ["object", STREAM_OPTIONS.goType, STREAM_OPTIONS],
  temperature: ["number", "float32"],
  top_p: ["number", "float32"],
  suffix: ["string", "string"],
};

/** openai.EmbedRequest. */
const EMBED_V1: Shape = { input: ["any", ""], model: ["string", "string"] };

/** Go's rand.Intn(999), which makes the ids "chatcmpl-214" and "cmpl-57". */
const idNumber = () => Math.floor(Math.random() * 999);

const includeUsage = (r: Obj) => (r.stream_options as Obj | null)?.include_usage === true;

/** Go's json.Marshal of a map: keys in order. */
const sortedKeys = (o: Obj): Obj =>
  Object.fromEntries(Object.entries(o).sort(([a], [b]) => a < b ? -1 : 1));

/** GET /v1/models: the models on disk, newest first; `data` is null when there are none. */
export function models(core: Core): Response {
  const data = core.catalog.list().map((e) => ({
    id: e.name,
    object: "model",
    created: Math.floor(e.modifiedMs / 1000),
    owned_by: namespaceOf(e.name),
  }));
  return encoded(200, { object: "list", data: data.length > 0 ? data : null });
}

/** GET /v1/models/{model}: the model under the id as asked. Go routes on the decoded path, so an
 * id with an escaped slash matches no route. */
export function model(core: Core, ctx: Ctx): Response {
  const raw = ctx.path.slice("/v1/models/".length);
  let id = raw;
  try {
    id = decodeURIComponent(raw);
  } catch {
    // Go keeps a malformed escape as written
  }
  if (id.includes("/")) return text(404, "404 page not found");
  const e = core.catalog.get(id);
  if (!e) return apiError(404, `model '${id}' not found`);
  const created = Math.floor(e.modifiedMs / 1000);
  return encoded(200, { id, object: "model", created, owned_by: namespaceOf(id) });
}

/** POST /v1/chat/completions through the native /api/chat. */
export async function chatCompletions(core: Core, ctx: Ctx): Promise<Response> {
  const d = decode(bodyText(ctx), "openai.ChatCompletionRequest", CHAT_V1);
  if ("error" in d) return invalid(d.error);
  const r = d.value;
  if (!Array.isArray(r.messages) || r.messages.length === 0) {
    return invalid("[] is too short - 'messages'");
  }
  // Ollama dereferences reasoning.effort without a check: gin's recovery answers the panic.
  const reasoning = r.reasoning as Obj | null | undefined;
  if (reasoning && (reasoning.effort ?? null) === null) return new Response(null, { status: 500 });
  const native = fromChatRequest(r);
  if (typeof native === "string") return invalid(native);
  ctx.request.native = native;
  const keepAliveMs = core.cfg.keepAliveMs;
  const res = await infer(core, "chat", ctx, JSON.stringify(native), { keepAliveMs });
  return await reply(res, chatWriter(`chatcmpl-${idNumber()}`, includeUsage(r)), r.stream === true);
}

/** POST /v1/completions through the native /api/generate. */
export async function completions(core: Core, ctx: Ctx): Promise<Response> {
  const d = decode(bodyText(ctx), "openai.CompletionRequest", COMPLETION_V1);
  if ("error" in d) return invalid(d.error);
  const r = d.value;
  const options = completionOptions(r);
  if (typeof options === "string") return invalid(options);
  const native = {
    model: r.model ?? "",
    prompt: r.prompt ?? "",
    suffix: r.suffix ?? "",
    system: "",
    template: "",
    stream: r.stream === true,
    options: sortedKeys(options),
  };
  ctx.request.native = native;
  const keepAliveMs = core.cfg.keepAliveMs;
  const res = await infer(core, "generate", ctx, JSON.stringify(native), { keepAliveMs });
  const writer = completionWriter(`cmpl-${idNumber()}`, includeUsage(r));
  return await reply(res, writer, r.stream === true);
}

/** POST /v1/embeddings through the native /api/embed. */
export async function embeddings(core: Core, ctx: Ctx): Promise<Response> {
  const d = decode(bodyText(ctx), "openai.EmbedRequest", EMBED_V1);
  if ("error" in d) return invalid(d.error);
  const model = typeof d.value.model === "string" ? d.value.model : "";
  let input = d.value.input;
  if (input === "") input = [""];
  if (input === undefined || input === null || (Array.isArray(input) && input.length === 0)) {
    return invalid("invalid input");
  }
  const native = { model, input };
  ctx.request.native = native;
  const keepAliveMs = core.cfg.keepAliveMs;
  const res = await embed(core, ctx, JSON.stringify(native), false, { keepAliveMs });
  if (res.status !== 200) return await relayError(res);
  const body = await res.json() as Obj;
  if (!Array.isArray(body.embeddings)) {
    const usage = { prompt_tokens: 0, total_tokens: 0 };
    return encoded(200, { object: "", data: null, model: "", usage });
  }
  const data = body.embeddings.map((embedding, index) => ({
    object: "embedding",
    embedding,
    index,
  }));
  const tokens = typeof body.prompt_eval_count === "number" ? body.prompt_eval_count : 0;
  return encoded(200, {
    object: "list",
    data: data.length > 0 ? data : null,
    model,
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  });
}

// ---------------------------------------------------------------------------------------------
// The middleware's translation to native requests (fromChatRequest, fromCompleteRequest)

/** The native chat request, or the middleware's 400 message. */
function fromChatRequest(r: Obj): Obj | string {
  const all = r.messages as (Obj | null)[];
  const messages: Obj[] = [];
  for (const msg of all) {
    const error = addMessage(messages, msg ?? {}, all);
    if (error) return error;
  }
  const native: Obj = { model: r.model ?? "", messages, stream: r.stream === true };
  const format = formatOf(r.response_format as Obj | null | undefined);
  if (format !== undefined) native.format = format;
  if (Array.isArray(r.tools) && r.tools.length > 0) native.tools = r.tools;
  native.options = sortedKeys(chatOptions(r));
  const effort = (r.reasoning as Obj | null | undefined)?.effort;
  if (typeof effort === "string") native.think = effort;
  return native;
}

function chatOptions(r: Obj): Obj {
  const o: Obj = {};
  if (typeof r.stop === "string") o.stop = [r.stop];
  else if (Array.isArray(r.stop)) {
    const stops = r.stop.filter((s) => typeof s === "string");
    o.stop = stops.length > 0 ? stops : null; // Go's nil slice
  }
  if (r.max_tokens != null) o.num_predict = r.max_tokens;
  o.temperature = r.temperature ?? 1.0;
  if (r.seed != null) o.seed = r.seed;
  if (r.frequency_penalty != null) o.frequency_penalty = r.frequency_penalty;
  if (r.presence_penalty != null) o.presence_penalty = r.presence_penalty;
  o.top_p = r.top_p ?? 1.0;
  const effort = (r.reasoning as Obj | null | undefined)?.effort;
  if (typeof effort === "string") o.reasoning = effort;
  return o;
}

/** The options of a completion, or the middleware's complaint about `stop`. */
function completionOptions(r: Obj): Obj | string {
  const o: Obj = {};
  if (typeof r.stop === "string") o.stop = [r.stop];
  else if (Array.isArray(r.stop)) {
    const bad = r.stop.find((s) => typeof s !== "string");
    if (bad !== undefined) return `invalid type for 'stop' field: ${goTypeName(bad)}`;
    o.stop = r.stop.length > 0 ? r.stop : null;
  }
  if (r.max_tokens != null) o.num_predict = r.max_tokens;
  o.temperature = r.temperature ?? 1.0;
  if (r.seed != null) o.seed = r.seed;
  o.frequency_penalty = r.frequency_penalty ?? 0;
  o.presence_penalty = r.presence_penalty ?? 0;
  o.top_p = typeof r.top_p === "number" && r.top_p !== 0 ? r.top_p : 1.0;
  return o;
}

/** response_format: json_object is Ollama's "json", json_schema its schema; anything else none. */
function formatOf(rf: Obj | null | undefined): unknown {
  if (!rf) return undefined;
  const type = String(rf.type ?? "").trim().toLowerCase();
  if (type === "json_object") return "json";
  if (type !== "json_schema") return undefined;
  return (rf.json_schema as Obj | null | undefined)?.schema;
}
