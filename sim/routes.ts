// Which handler answers which method and path, as Ollama 0.11.4's gin router does: a known path
// with another method is a 405, an unknown path (/v1/responses among them) a 404, both in plain
// text.

import type { Core } from "./core.ts";
import { embed } from "./embed.ts";
import { bodyText, type Ctx, json, text } from "./http.ts";
import { infer } from "./infer.ts";
import { ps, show, tags } from "./info.ts";
import { blob, copy, manage, remove } from "./manage.ts";
import { chatCompletions, completions, embeddings, model, models } from "./openai.ts";
import { apiError } from "./openai_reply.ts";

type Handler = (core: Core, ctx: Ctx) => Promise<Response> | Response;

const root: Handler = (_, ctx) => text(200, ctx.req.method === "HEAD" ? null : "Ollama is running");

/** Path → method → handler. */
const ROUTES: Record<string, Record<string, Handler>> = {
  "/": { GET: root, HEAD: root },
  "/api/version": {
    GET: (core) => json(200, { version: core.cfg.version }),
    HEAD: (core) => json(200, { version: core.cfg.version }),
  },
  "/api/tags": { GET: tags, HEAD: tags },
  "/api/ps": { GET: ps },
  "/api/show": { POST: show },
  "/api/chat": { POST: (core, ctx) => infer(core, "chat", ctx, bodyText(ctx)) },
  "/api/generate": { POST: (core, ctx) => infer(core, "generate", ctx, bodyText(ctx)) },
  "/api/embed": { POST: (core, ctx) => embed(core, ctx, bodyText(ctx), false) },
  "/api/embeddings": { POST: (core, ctx) => embed(core, ctx, bodyText(ctx), true) },
  "/api/pull": { POST: manage },
  "/api/push": { POST: manage },
  "/api/create": { POST: manage },
  "/api/copy": { POST: copy },
  "/api/delete": { DELETE: remove },
  "/v1/models": { GET: models },
  "/v1/chat/completions": { POST: chatCompletions },
  "/v1/completions": { POST: completions },
  "/v1/embeddings": { POST: embeddings },
};

/** The methods a path pattern serves, for paths with a parameter. */
const PATTERNS: [RegExp, Record<string, Handler>][] = [
  [/^\/api\/blobs\/[^/]+$/, { POST: blob, HEAD: blob }],
  [/^\/v1\/models\/[^/]+$/, { GET: model }],
];

export function route(core: Core, ctx: Ctx): Promise<Response> | Response {
  const methods = Object.hasOwn(ROUTES, ctx.path)
    ? ROUTES[ctx.path]
    : PATTERNS.find(([re]) => re.test(ctx.path))?.[1];
  if (!methods) return text(404, "404 page not found");
  const handler = Object.hasOwn(methods, ctx.req.method) ? methods[ctx.req.method] : undefined;
  return handler ? handler(core, ctx) : text(405, "405 method not allowed");
}

/** An injected failure, in the shape of the surface it hits. */
export function failure(path: string, status: number, error: string): Response {
  return path.startsWith("/v1/") ? apiError(status, error) : json(status, { error });
}
