// How the worker knows an answer from the target is complete, by endpoint and framing: where each
// endpoint's request goes, how its answer is framed (NDJSON, Server-Sent Events or one JSON
// document), what its end must say for its job to be done, and what an async job keeps of it.

import { createHash } from "node:crypto";
import { ollamaError, openaiError, TargetHttpError } from "../ollama/client.ts";
import { type Endpoint, isOpenAI } from "../queue/states.ts";
import type { Artifact, TransitionValues } from "../queue/store.ts";

/** The target's route for each endpoint. */
export const TARGET_PATHS: Record<Endpoint, string> = {
  chat: "/api/chat",
  generate: "/api/generate",
  "openai.chat": "/v1/chat/completions",
  "openai.completions": "/v1/completions",
};

/**
 * How an answer is framed: NDJSON lines (native), or on /v1 by its content type, Server-Sent
 * Events or one JSON document. Streams (NDJSON, SSE) are relayed; a document is read whole.
 */
export type AnswerFraming = "ndjson" | "sse" | "json";

/** How a sync job's answer is framed: NDJSON (native), or by its content type on /v1. */
export function framingOf(endpoint: Endpoint, headers: Headers): AnswerFraming {
  if (!isOpenAI(endpoint)) return "ndjson";
  return headers.get("content-type")?.startsWith("text/event-stream") ? "sse" : "json";
}

/**
 * Why an answer that ended does not complete its job, or undefined when it does: `last` is the
 * last line (ndjson, sse) or the whole document (json).
 * - ndjson: Ollama's closing object has done:true, and a mid-stream failure is an {"error"} line.
 *   Ollama can end a response early without it; the caller has what was sent, but the job did
 *   not complete.
 * - sse: a whole stream ends with `data: [DONE]`. Ollama 0.11.4's /v1 writer turns a native
 *   mid-stream {"error"} line into an empty chunk and stops without `[DONE]`, so the missing
 *   marker is how a failure shows; an error event (a proxy's, or a later Ollama's) names it.
 * - json: one object without "error".
 */
export function incomplete(last: string, framing: AnswerFraming): string | undefined {
  if (framing === "sse") {
    if (last === "data: [DONE]") return undefined;
    return openaiError(last.replace(/^data: ?/, "")) ?? SSE_INCOMPLETE;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(last);
  } catch {
    return framing === "json" ? NOT_JSON : INCOMPLETE;
  }
  const error = framing === "json" ? openaiError(last) : ollamaError(last);
  if (error !== undefined) return error;
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    return "the target sent an unexpected response";
  }
  if (framing === "json") {
    return "error" in parsed ? "the target sent an unexpected response" : undefined;
  }
  return (parsed as { done?: unknown }).done === true ? undefined : INCOMPLETE;
}

/** What `incomplete` judges in a whole answer: its last line (NDJSON), or all of it (JSON). */
export function lastOf(bytes: Uint8Array, framing: AnswerFraming): string {
  const text = decoder.decode(bytes);
  if (framing !== "ndjson") return text;
  const trimmed = text.trim();
  return trimmed.slice(trimmed.lastIndexOf("\n") + 1);
}

/**
 * What an async job's whole answer completes it with: the answer as its result and as its
 * "completion" artifact. One that is not a single JSON document, or does not complete the job, is
 * the target's error (502), which the job may retry.
 */
export function completionOf(
  bytes: Uint8Array<ArrayBuffer>,
  endpoint: Endpoint,
): TransitionValues["complete"] {
  const text = decoder.decode(bytes);
  try {
    JSON.parse(text);
  } catch {
    throw new TargetHttpError(502, NOT_JSON);
  }
  const problem = incomplete(text, isOpenAI(endpoint) ? "json" : "ndjson");
  if (problem !== undefined) throw new TargetHttpError(502, problem);
  const completion: Artifact = {
    name: "completion",
    contentType: "application/json",
    size: bytes.byteLength,
    sha256: createHash("sha256").update(bytes).digest("hex"),
    body: bytes,
  };
  return { result: text, artifacts: [completion] };
}

const decoder = new TextDecoder();

const INCOMPLETE = "the target ended its response without done:true";
const NOT_JSON = "the target sent a response that is not JSON";
const SSE_INCOMPLETE = "the target ended its event stream without data: [DONE]";
