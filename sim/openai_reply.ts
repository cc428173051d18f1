// The writers of Ollama 0.11.4's OpenAI-compatible routes (openai/openai.go): each takes what the
// native handler answered and writes it in OpenAI's shape: an error, a chat.completion or
// text_completion object, an embedding list, or Server-Sent Events ending in `data: [DONE]`.

import { DROPPED } from "./faults.ts";
import { JSON_TYPE } from "./http.ts";
import { unixSeconds } from "./time.ts";

type Obj = Record<string, unknown>;

/** Go's json.Encoder output: one line, with the content type Ollama's writers set. */
export function encoded(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": "application/json" },
  });
}

/** An error the /v1 middleware itself finds (bad JSON, no messages): 400 invalid_request_error,
 * written by gin's AbortWithStatusJSON. */
export function invalid(message: string): Response {
  const error = { message, type: "invalid_request_error", param: null, code: null };
  return new Response(JSON.stringify({ error }), {
    status: 400,
    headers: { "content-type": JSON_TYPE },
  });
}

/** An error the native handler answered, rewritten by BaseWriter.writeError: the same status, and
 * the type is always api_error (openai.NewError(500, …)). */
export function apiError(status: number, message: string): Response {
  return encoded(status, { error: { message, type: "api_error", param: null, code: null } });
}

/** writeError for a native error response; its `error` field becomes the message. */
export async function relayError(native: Response): Promise<Response> {
  let message = "something went wrong, please see the ollama server logs for details";
  try {
    const body = await native.json();
    if (typeof body?.error === "string" && body.error !== "") message = body.error;
  } catch {
    // no JSON body: Go's fallback text
  }
  return apiError(native.status, message);
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

function usage(r: Obj): Usage {
  const prompt = typeof r.prompt_eval_count === "number" ? r.prompt_eval_count : 0;
  const completion = typeof r.eval_count === "number" ? r.eval_count : 0;
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
  };
}

/** Go's json.Marshal of a map: keys sorted, at every level. */
function sortedJson(v: unknown): string {
  if (v === undefined) return "null";
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(sortedJson).join(",")}]`;
  const keys = Object.keys(v).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${sortedJson((v as Obj)[k])}`).join(",")}}`;
}

const ID_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789";

/** toToolCalls: native tool calls with an id of Ollama's making and the arguments as a string. */
function toolCalls(calls: unknown): Obj[] {
  if (!Array.isArray(calls)) return [];
  return calls.map((call) => {
    const fn = (call?.function ?? {}) as Obj;
    let id = "call_";
    for (let i = 0; i < 8; i++) id += ID_LETTERS[Math.floor(Math.random() * ID_LETTERS.length)];
    return {
      id,
      index: typeof fn.index === "number" ? fn.index : 0,
      type: "function",
      function: { name: fn.name ?? "", arguments: sortedJson(fn.arguments) },
    };
  });
}

/** An OpenAI message (or delta) from a native one; empty fields are left out, as omitempty does. */
function message(m: Obj, role: unknown, calls: Obj[]): Obj {
  const out: Obj = { role: role ?? "", content: m.content ?? "" };
  if (m.thinking) out.reasoning = m.thinking;
  if (calls.length > 0) out.tool_calls = calls;
  return out;
}

const reasonOf = (r: Obj): string | null =>
  typeof r.done_reason === "string" && r.done_reason !== "" ? r.done_reason : null;

/** How one /v1 route writes the native answer. */
export interface Writer {
  /** The whole answer (stream false). */
  whole(r: Obj): Obj;
  /** The events for one native chunk; "[DONE]" ends the stream. */
  chunk(r: Obj): (Obj | "[DONE]")[];
}

/** ChatWriter: chat.completion, or chat.completion.chunk events. */
export function chatWriter(id: string, includeUsage: boolean): Writer {
  let toolCallSent = false;
  return {
    whole(r) {
      const m = (r.message ?? {}) as Obj;
      const calls = toolCalls(m.tool_calls);
      const choice = {
        index: 0,
        message: message(m, m.role, calls),
        finish_reason: calls.length > 0 ? "tool_calls" : reasonOf(r),
      };
      const created = unixSeconds(r.created_at);
      return { ...head(id, "chat.completion", created, r), choices: [choice], usage: usage(r) };
    },
    chunk(r) {
      const m = (r.message ?? {}) as Obj;
      const calls = toolCalls(m.tool_calls);
      const reason = reasonOf(r);
      const finish = reason && (toolCallSent || calls.length > 0) ? "tool_calls" : reason;
      if (calls.length > 0) toolCallSent = true;
      const delta = message(m, "assistant", calls);
      const c = {
        ...head(id, "chat.completion.chunk", unixSeconds(undefined), r),
        choices: [{ index: 0, delta, finish_reason: finish }],
      };
      return ending(r, c, includeUsage);
    },
  };
}

/** CompleteWriter: text_completion, whole or as events (with include_usage, every event carries a
 * zero usage until the last). */
export function completionWriter(id: string, includeUsage: boolean): Writer {
  const choice = (r: Obj) => ({ text: r.response ?? "", index: 0, finish_reason: reasonOf(r) });
  return {
    whole(r) {
      const created = unixSeconds(r.created_at);
      return { ...head(id, "text_completion", created, r), choices: [choice(r)], usage: usage(r) };
    },
    chunk(r) {
      const c: Obj = {
        id,
        object: "text_completion",
        created: unixSeconds(undefined),
        choices: [choice(r)],
        model: r.model ?? "",
        system_fingerprint: "fp_ollama",
      };
      if (includeUsage) c.usage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
      return ending(r, c, includeUsage);
    },
  };
}

function head(id: string, object: string, created: number, r: Obj): Obj {
  return { id, object, created, model: r.model ?? "", system_fingerprint: "fp_ollama" };
}

/** The chunk's event, then on the last one the usage event (when asked) and [DONE]. */
function ending(r: Obj, c: Obj, includeUsage: boolean): (Obj | "[DONE]")[] {
  if (r.done !== true) return [c];
  const events: (Obj | "[DONE]")[] = [c];
  // The same chunk with no choices and the usage, which Go's struct puts last.
  if (includeUsage) events.push({ ...c, choices: [], usage: usage(r) });
  events.push("[DONE]");
  return events;
}

/** The native answer rewritten by `w`: an error as api_error, else JSON or Server-Sent Events. */
export async function reply(native: Response, w: Writer, stream: boolean): Promise<Response> {
  if (native.status !== 200) return await relayError(native);
  if (!stream) {
    return encoded(200, w.whole(await native.json()));
  }
  return new Response(events(native.body!, w), {
    status: 200,
    headers: { "content-type": "text/event-stream" },
  });
}

/** Each native JSON line (or a whole JSON answer) as `data: …` events, pulled as the client reads,
 * so a stall or drop of the native answer reaches the client unchanged. */
function events(native: ReadableStream<Uint8Array>, w: Writer): ReadableStream<Uint8Array> {
  const reader = native.pipeThrough(new TextDecoderStream()).getReader();
  const encoder = new TextEncoder();
  let buf = "";
  const emit = (line: string) =>
    w.chunk(JSON.parse(line))
      .map((e) => `data: ${e === "[DONE]" ? e : JSON.stringify(e)}\n\n`).join("");
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      try {
        while (!buf.includes("\n")) {
          const { value, done } = await reader.read();
          if (done) {
            if (buf.trim() !== "") c.enqueue(encoder.encode(emit(buf)));
            c.close();
            return;
          }
          buf += value;
        }
      } catch (e) {
        c.error(e ?? DROPPED);
        return;
      }
      const lines = buf.split("\n");
      buf = lines.pop()!;
      c.enqueue(encoder.encode(lines.filter((l) => l.trim() !== "").map(emit).join("")));
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
