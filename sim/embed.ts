// /api/embed and the legacy /api/embeddings: deterministic vectors for each input, made while the
// request holds the model's slot (L2-normalised by /api/embed, raw from /api/embeddings).

import { bind, EMBED, EMBEDDINGS, optionsError } from "./bind.ts";
import type { Core } from "./core.ts";
import { type Ctx, json } from "./http.ts";
import type { ScheduleOptions } from "./infer.ts";
import { words } from "./answer.ts";
import { hash } from "./names.ts";
import type { Runner } from "./scheduler.ts";
import { ns, sleep } from "./time.ts";

/** POST /api/embed (or /api/embeddings when `legacy`) with `text` as the body. */
export async function embed(
  core: Core,
  ctx: Ctx,
  text: string,
  legacy: boolean,
  opts: ScheduleOptions = {},
): Promise<Response> {
  const b = legacy
    ? bind(text, "api.EmbeddingRequest", EMBEDDINGS)
    : bind(text, "api.EmbedRequest", EMBED);
  if ("error" in b) return json(400, { error: b.error });
  const r = b.value;
  const inputs = readInputs(r, legacy);
  if (inputs instanceof Response) return inputs;
  const model = typeof r.model === "string" ? r.model : "";
  // /api/embeddings checks the name; /api/embed asks the scheduler for "" and finds nothing.
  if (!model && legacy) return json(400, { error: "model is required" });
  const entry = model ? core.catalog.get(model) : undefined;
  if (model) core.log("request", entry?.name ?? model, ctx.path);
  if (!entry) {
    return json(404, { error: `model ${JSON.stringify(model)} not found, try pulling it first` });
  }
  const options = (r.options ?? undefined) as Record<string, unknown> | undefined;
  const badOption = optionsError(options);
  if (badOption) return json(500, { error: badOption });
  const keepAliveMs = opts.keepAliveMs ?? b.keepAliveMs;
  const runner = await core.hold(entry.name, options, keepAliveMs, ctx.signal);
  if (runner instanceof Response) return runner;
  const loadedAt = performance.now();
  if (inputs.length === 0) {
    core.sched.release(runner);
    return json(200, legacy ? { embedding: [] } : { model, embeddings: [] });
  }
  if (!(await compute(core, ctx, entry.name, runner))) {
    return json(499, { error: "request canceled" });
  }
  const vectors = inputs.map((t) => rawVector(entry.name, t, core.cfg.dimensions));
  if (legacy) return json(200, { embedding: vectors[0] });
  const dims = typeof r.dimensions === "number" && r.dimensions > 0 ? Math.trunc(r.dimensions) : 0;
  return json(200, {
    model,
    embeddings: vectors.map((v) => normalize(dims ? v.slice(0, dims) : v)),
    total_duration: ns(performance.now() - ctx.started),
    load_duration: ns(loadedAt - ctx.started),
    prompt_eval_count: inputs.reduce((s, t) => s + Math.max(1, words(t)), 0),
  });
}

/** The texts to embed: a string (none when empty) or an array of strings. */
function readInputs(r: Record<string, unknown>, legacy: boolean): string[] | Response {
  if (legacy) return typeof r.prompt === "string" && r.prompt !== "" ? [r.prompt] : [];
  if (typeof r.input === "string") return r.input !== "" ? [r.input] : [];
  if (Array.isArray(r.input)) {
    if (r.input.some((v) => typeof v !== "string")) {
      return json(400, { error: "invalid input type" });
    }
    return r.input as string[];
  }
  if (r.input !== undefined && r.input !== null) return json(400, { error: "invalid input type" });
  return [];
}

/** Holds the model's slot for one tokenMs, as the embedding's work; false if the client left. */
async function compute(core: Core, ctx: Ctx, name: string, runner: Runner): Promise<boolean> {
  try {
    await runner.slot.acquire(ctx.signal);
  } catch {
    core.sched.release(runner);
    return false;
  }
  core.begin(name, ctx.path);
  const ok = core.cfg.tokenMs > 0 ? await sleep(core.cfg.tokenMs, ctx.signal) : !ctx.signal.aborted;
  core.end(name, ctx.path);
  runner.slot.release();
  core.sched.release(runner);
  return ok;
}

/** A deterministic unit-free vector for `input`; /api/embed normalises it, /api/embeddings not. */
function rawVector(model: string, input: string, dims: number): number[] {
  let x = hash(`${model}\u0000${input}`) || 1;
  const out: number[] = [];
  for (let i = 0; i < dims; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.push((x / 0xffffffff) * 2 - 1);
  }
  return out;
}

function normalize(v: number[]): number[] {
  const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  return norm > 0 ? v.map((x) => x / norm) : v;
}
