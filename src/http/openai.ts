// The OpenAI-compatible surface (ADR-0016): /v1/chat/completions and /v1/completions become sync
// jobs in the same queue as /api/chat, relayed byte for byte from Ollama's own /v1 routes;
// /v1/embeddings goes straight to the target like /api/embed; the model list comes from the
// inventory in OpenAI's shape. The router gives every error here OpenAI's shape.

import type { ModelInfo } from "../ollama/models.ts";
import { namespaceOf, sameModel } from "../ollama/models.ts";
import type { HttpDeps } from "./deps.ts";
import { HttpError, jsonResponse } from "./errors.ts";
import { embed, queued } from "./native.ts";
import { requireModel } from "./validate.ts";

/** What foreman serves under /v1, for the 404 of any other /v1 path. */
export const SERVED = "POST /v1/chat/completions, POST /v1/completions, POST /v1/embeddings, " +
  "GET /v1/models and GET /v1/models/{model}";

/** POST /v1/chat/completions: a sync job run at the target's /v1/chat/completions. */
export function chatCompletions(req: Request, d: HttpDeps): Promise<Response> {
  return queued(req, d, { endpoint: "openai.chat" });
}

/** POST /v1/completions: a sync job run at the target's /v1/completions. */
export function completions(req: Request, d: HttpDeps): Promise<Response> {
  return queued(req, d, { endpoint: "openai.completions" });
}

/** POST /v1/embeddings: never queued, concurrent with the worker, as /api/embed. */
export function embeddings(req: Request, d: HttpDeps): Promise<Response> {
  return embed(req, d, { path: "/v1/embeddings" });
}

/** GET /v1/models: the target's models from the inventory cache. */
export async function models(d: HttpDeps): Promise<Response> {
  const tags = await inventoryModels(d);
  return jsonResponse({ object: "list", data: tags.map((m) => modelObject(m, m.name)) });
}

/**
 * GET /v1/models/{model}: the model under the id as asked, as Ollama answers; one fresh poll
 * before a 404, as for a job.
 */
export async function model(d: HttpDeps, raw: string): Promise<Response> {
  let id: string;
  try {
    id = decodeURIComponent(raw);
  } catch {
    throw new HttpError(400, `invalid model id '${raw.slice(0, 200)}': bad percent-encoding`);
  }
  await requireModel(d.inventory, id);
  const entry = (await inventoryModels(d)).find((m) => sameModel(m.name, id));
  // requireModel lets a model through when the target was never reached: nothing to show.
  if (!entry) throw new HttpError(503, "target unavailable and no model inventory known yet");
  return jsonResponse(modelObject(entry, id));
}

async function inventoryModels(d: HttpDeps): Promise<ModelInfo[]> {
  if (d.inventory.snapshot.lastPoll === null && !(await d.inventory.refresh())) {
    throw new HttpError(503, "target unavailable and no model inventory known yet");
  }
  return d.inventory.snapshot.tags.models;
}

/** OpenAI's model object: `created` from the file's modification time, owned by its namespace. */
function modelObject(m: ModelInfo, id: string): Record<string, unknown> {
  const modified = typeof m.modified_at === "string" ? Date.parse(m.modified_at) : NaN;
  return {
    id,
    object: "model",
    created: Number.isNaN(modified) ? 0 : Math.floor(modified / 1000),
    owned_by: namespaceOf(id),
  };
}
