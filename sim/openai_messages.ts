// fromChatRequest's half that reads OpenAI messages into native ones: string content, content
// parts (text, base64 data-URL images), tool calls with their arguments as JSON text, and tool
// answers named by their call's id. Errors are the middleware's 400 messages.

import { goTypeName } from "./bind.ts";

type Obj = Record<string, unknown>;

const IMAGE_TYPES = ["jpeg", "jpg", "png", "webp"];
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Appends the native messages `msg` becomes to `out`; returns the 400 message if it cannot. */
export function addMessage(out: Obj[], msg: Obj, all: (Obj | null)[]): string | undefined {
  const role = msg.role ?? "";
  let toolName = "";
  if (String(role).toLowerCase() === "tool") {
    toolName = String(msg.name ?? "");
    if (toolName === "" && msg.tool_call_id) toolName = nameOfCall(all, String(msg.tool_call_id));
  }
  const content = msg.content;
  if (typeof content === "string") {
    const calls = fromToolCalls(msg.tool_calls);
    if (typeof calls === "string") return calls;
    const thinking = msg.reasoning;
    out.push(native({ role, content, thinking, tool_calls: calls, tool_name: toolName }));
    return undefined;
  }
  if (Array.isArray(content)) return addParts(out, msg, content, toolName);
  // Content is optional only when tool calls are there.
  if (msg.tool_calls === undefined || msg.tool_calls === null) {
    return `invalid message content type: ${goTypeName(content)}`;
  }
  const calls = fromToolCalls(msg.tool_calls);
  if (typeof calls === "string") return calls;
  out.push(native({ role, content: "", thinking: msg.reasoning, tool_calls: calls }));
  return undefined;
}

/** Content parts: one native message each; the tool calls go on the last message so far. */
function addParts(out: Obj[], msg: Obj, parts: unknown[], toolName: string): string | undefined {
  for (const part of parts) {
    const m = fromPart(msg.role ?? "", part);
    if (typeof m === "string") return m;
    out.push(m);
  }
  const last = out.at(-1);
  if (!last || !Array.isArray(msg.tool_calls) || msg.tool_calls.length === 0) return undefined;
  const calls = fromToolCalls(msg.tool_calls);
  if (typeof calls === "string") return calls;
  out[out.length - 1] = native({
    ...last,
    thinking: msg.reasoning,
    tool_calls: calls,
    tool_name: toolName || last.tool_name,
  });
  return undefined;
}

/** api.Message as Go encodes it: role and content always, the rest only when set. */
function native(m: Obj): Obj {
  const out: Obj = { role: m.role, content: m.content };
  for (const key of ["thinking", "images", "tool_calls", "tool_name"]) {
    const v = m[key];
    if (v !== undefined && v !== null && v !== "" && !(Array.isArray(v) && v.length === 0)) {
      out[key] = v;
    }
  }
  return out;
}

/** One content part: text, or an image as a base64 data URL. */
function fromPart(role: unknown, part: unknown): Obj | string {
  if (part === null || typeof part !== "object" || Array.isArray(part)) {
    return "invalid message format";
  }
  const p = part as Obj;
  if (p.type === "text") {
    return typeof p.text === "string" ? { role, content: p.text } : "invalid message format";
  }
  if (p.type !== "image_url") return "invalid message format";
  const holder = p.image_url;
  const url = holder !== null && typeof holder === "object" && !Array.isArray(holder)
    ? (holder as Obj).url
    : holder;
  if (typeof url !== "string") return "invalid message format";
  const prefix = IMAGE_TYPES.map((t) => `data:image/${t};base64,`).find((x) => url.startsWith(x));
  if (!prefix) return "invalid image input";
  const data = url.slice(prefix.length);
  if (!BASE64.test(data)) return "invalid message format";
  return { role, content: "", images: [data] };
}

/** Tool calls with their arguments parsed, or "invalid tool call arguments". */
function fromToolCalls(calls: unknown): Obj[] | string {
  if (!Array.isArray(calls)) return [];
  const out: Obj[] = [];
  for (const call of calls as (Obj | null)[]) {
    const fn = (call?.function ?? {}) as Obj;
    let args: unknown;
    try {
      args = JSON.parse(String(fn.arguments ?? ""));
    } catch {
      return "invalid tool call arguments";
    }
    if (args !== null && (typeof args !== "object" || Array.isArray(args))) {
      return "invalid tool call arguments";
    }
    out.push({ function: { name: fn.name ?? "", arguments: args } });
  }
  return out;
}

/** The function name of the tool call with this id, the last one if several share it. */
function nameOfCall(all: (Obj | null)[], id: string): string {
  for (const msg of [...all].reverse()) {
    const calls = Array.isArray(msg?.tool_calls) ? msg.tool_calls as (Obj | null)[] : [];
    const call = calls.find((c) => c?.id === id);
    if (call) return String((call.function as Obj | undefined)?.name ?? "");
  }
  return "";
}
