// One chat or generate answer, once its request holds the model's slot: the pieces it is made of
// ("w1 w2 …", thinking, a tool call), one chunk per tokenMs, the final chunk's metrics, Ollama's
// repeat guard, and the answer streamed as NDJSON or merged for stream:false, with any stall or
// drop the request carries.

import type { Core } from "./core.ts";
import { DROPPED, type Fault, inflict } from "./faults.ts";
import { type Ctx, json } from "./http.ts";
import type { InferKind, InferRequest } from "./infer.ts";
import { hash } from "./names.ts";
import type { Runner } from "./scheduler.ts";
import { aborted, goTime, now, ns, sleep } from "./time.ts";

type Chunk = Record<string, unknown>;

/** The content a default answer of `n` chunks carries: "w1 w2 … wn". */
export function simWords(n: number): string {
  return Array.from({ length: n }, (_, i) => `w${i + 1}`).join(" ");
}

/** Whitespace-separated words, the simulator's stand-in for tokens. */
export const words = (s: unknown): number =>
  typeof s === "string" ? s.split(/\s+/).filter(Boolean).length : 0;

interface Piece {
  thinking?: string;
  content?: string;
  toolCalls?: unknown[];
}

/** A request that holds its model's runner and slot. */
export interface Holding {
  core: Core;
  ctx: Ctx;
  req: InferRequest;
  /** The model's full name. */
  name: string;
  runner: Runner;
  /** performance.now() once the model was loaded. */
  loadedAt: number;
}

/** Generates the answer and frees the slot and the runner when it ends, however it ends. */
export async function answer(h: Holding): Promise<Response> {
  const gen = new Generation(h);
  const fault = h.ctx.fault;
  h.ctx.fault = undefined;
  if (fault?.afterChunks === 0) return await inflictDuring(fault, gen);
  return h.req.stream ? await streamed(gen, fault) : await whole(gen, fault);
}

async function inflictDuring(fault: Fault, gen: Generation): Promise<Response> {
  const res = await inflict(fault, gen.h.ctx);
  gen.finish();
  return res;
}

class Generation {
  readonly pieces: Piece[];
  readonly doneReason: "stop" | "length";
  readonly promptTokens: number;
  /** Aborts when the client leaves or the generation is finished. */
  readonly signal: AbortSignal;
  readonly started = performance.now();
  firstAt = this.started;
  /** Ollama's repeat guard ended the answer, which then has no done:true chunk. */
  looped = false;
  #stop = new AbortController();
  #finished = false;

  constructor(readonly h: Holding) {
    this.signal = AbortSignal.any([h.ctx.signal, this.#stop.signal]);
    h.core.begin(h.name, h.ctx.path);
    const { req } = h;
    const predict = typeof req.options?.num_predict === "number"
      ? Math.trunc(req.options.num_predict)
      : 0;
    this.doneReason = predict > 0 ? "length" : "stop";
    this.pieces = pieces(req, predict > 0 ? predict : h.core.cfg.tokens, h.core.cfg.repeatLimit);
    this.promptTokens = Math.max(
      1,
      req.kind === "chat"
        ? req.messages.reduce((s, msg) => s + words(msg.content) + 1, 0)
        : words(req.body.system) + words(req.prompt),
    );
  }

  /** Frees the slot and the runner; safe to call more than once. */
  finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#stop.abort();
    const { core, ctx, name, runner } = this.h;
    core.end(name, ctx.path);
    runner.slot.release();
    core.sched.release(runner);
  }

  /** One chunk per tokenMs, then the final one; ends early without it when the client leaves, or
   * when Ollama's loop guard fires (llm/server.go: the same trimmed token more than 30 times in a
   * row ends the completion quietly, so the answer simply stops). */
  async *chunks(): AsyncGenerator<Chunk> {
    const tokenMs = this.h.core.cfg.tokenMs;
    let lastToken = "";
    let repeats = 0;
    for (const [i, p] of this.pieces.entries()) {
      // With no delay there is no timer either: even setTimeout(0) costs about a millisecond.
      if (tokenMs > 0 ? !(await sleep(tokenMs, this.signal)) : this.signal.aborted) return;
      const token = (p.thinking ?? p.content ?? "").trim();
      if (token === lastToken) repeats++;
      else [lastToken, repeats] = [token, 0];
      if (repeats > 30) {
        this.looped = true;
        return;
      }
      if (i === 0) this.firstAt = performance.now();
      yield this.#chunk(p);
    }
    yield this.#final();
  }

  #chunk(p: Piece): Chunk {
    const head = { model: this.h.req.model, created_at: goTime(now()) };
    if (this.h.req.kind === "generate") {
      const c: Chunk = { ...head, response: p.content ?? "" };
      if (p.thinking) c.thinking = p.thinking;
      c.done = false;
      return c;
    }
    const message: Chunk = { role: "assistant", content: p.content ?? "" };
    if (p.thinking) message.thinking = p.thinking;
    if (p.toolCalls) message.tool_calls = p.toolCalls;
    return { ...head, message, done: false };
  }

  #final(): Chunk {
    const { ctx, req, loadedAt } = this.h;
    const t = performance.now();
    const metrics = {
      total_duration: ns(t - ctx.started),
      load_duration: ns(loadedAt - ctx.started),
      prompt_eval_count: this.promptTokens,
      prompt_eval_duration: ns(this.firstAt - this.started),
      eval_count: this.pieces.length,
      eval_duration: ns(t - this.firstAt),
    };
    const head = { model: req.model, created_at: goTime(now()) };
    const reason = this.doneReason;
    if (req.kind === "chat") {
      const message = { role: "assistant", content: "" };
      return { ...head, message, done_reason: reason, done: true, ...metrics };
    }
    const seed = hash(req.prompt);
    const context = Array.from(
      { length: this.promptTokens + this.pieces.length },
      (_, i) => (seed + i * 7919) % 32000,
    );
    return { ...head, response: "", done: true, done_reason: reason, context, ...metrics };
  }
}

/** What the model says: thinking first when asked, then a tool call (when tools are offered and
 * the last message is not a tool's answer) or `n` words, wrapped as JSON when a format is set. */
function pieces(req: InferRequest, n: number, repeatLimit: boolean): Piece[] {
  const out: Piece[] = req.think ? [{ thinking: "t1" }, { thinking: " t2" }] : [];
  const tools = req.tools as Record<string, unknown>[];
  if (req.kind === "chat" && tools.length > 0 && req.messages.at(-1)?.role !== "tool") {
    const fn = tools[0]?.function as Record<string, unknown> | undefined;
    const name = typeof fn?.name === "string" ? fn.name : "tool";
    out.push({ content: "", toolCalls: [{ function: { name, arguments: {} } }] });
    return out;
  }
  // A looping model repeats its first word, so that Ollama's repeat limit can cut it short.
  const ws = repeatLimit ? Array<string>(n).fill("w1") : simWords(n).split(" ");
  const format = req.body.format;
  const formatted = format !== undefined && format !== null && format !== "";
  const content = ws.map((w, i) => (i ? " " : formatted ? '{"text":"' : "") + w);
  if (formatted) content[content.length - 1] += '"}';
  for (const c of content) out.push({ content: c });
  return out;
}

/** stream:false: one JSON object, once the whole answer is made. */
async function whole(gen: Generation, fault: Fault | undefined): Promise<Response> {
  const got: Chunk[] = [];
  for await (const c of gen.chunks()) {
    got.push(c);
    if (fault && got.length === fault.afterChunks) return await inflictDuring(fault, gen);
  }
  gen.finish();
  const last = got.at(-1);
  if (!last || (last.done !== true && !gen.looped)) return json(499, { error: "request canceled" });
  return json(200, merge(gen.h.req.kind, got));
}

/** What stream:false answers: the last chunk (the done:true one, unless the answer was cut short)
 * holding everything the chunks carried. */
function merge(kind: InferKind, chunks: Chunk[]): Chunk {
  const last = { ...chunks.at(-1)! };
  if (kind === "generate") {
    const thinking = chunks.map((c) => c.thinking ?? "").join("");
    const merged: Chunk = {
      model: last.model,
      created_at: last.created_at,
      response: chunks.map((c) => c.response).join(""),
    };
    if (thinking) merged.thinking = thinking;
    return { ...merged, ...last, ...merged };
  }
  const msgs = chunks.map((c) => c.message as Chunk);
  const message: Chunk = { role: "assistant", content: msgs.map((m) => m.content).join("") };
  const thinking = msgs.map((m) => m.thinking ?? "").join("");
  if (thinking) message.thinking = thinking;
  const calls = msgs.flatMap((m) => (m.tool_calls ?? []) as unknown[]);
  if (calls.length) message.tool_calls = calls;
  return { ...last, message };
}

/** NDJSON, one line per chunk as it is made; a stall or drop after `fault.afterChunks` lines. */
async function streamed(gen: Generation, fault: Fault | undefined): Promise<Response> {
  const it = gen.chunks();
  const first = await it.next();
  if (first.done) {
    gen.finish();
    return json(499, { error: "request canceled" });
  }
  const encoder = new TextEncoder();
  const line = (c: Chunk) => encoder.encode(JSON.stringify(c) + "\n");
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(line(first.value));
      sent = 1;
    },
    async pull(c) {
      if (fault && sent === fault.afterChunks) {
        // A drop errors the body: Deno flushes the chunks already sent, then closes the socket.
        if (fault.kind === "stall") await aborted(gen.h.ctx.signal);
        gen.finish();
        c.error(DROPPED);
        return;
      }
      const next = await it.next();
      if (next.done) {
        gen.finish();
        if (gen.looped) c.close(); // a complete HTTP response that lacks its done:true line
        else c.error(DROPPED); // the client left mid-generation
        return;
      }
      if (next.value.done === true) gen.finish(); // so a reader of the last chunk sees the model free
      try {
        c.enqueue(line(next.value));
        sent++;
        if (next.value.done === true) c.close();
      } catch {
        // cancelled meanwhile: the client is gone
      }
    },
    cancel() {
      gen.finish();
    },
  }, { highWaterMark: 0 });
  return new Response(body, { status: 200, headers: { "content-type": "application/x-ndjson" } });
}
