// Model management: /api/pull, /api/push and /api/create (progress lines, then success or an
// error), /api/copy, /api/delete and /api/blobs. Offline by default, as an Ollama without a
// network is: pull and push fail with Go's DNS error.

import { bind, COPY, NAMED } from "./bind.ts";
import type { ModelEntry } from "./catalog.ts";
import type { Core } from "./core.ts";
import { bodyText, type Ctx, json } from "./http.ts";
import { fullName, registryOf } from "./names.ts";
import { now } from "./time.ts";

type Status = Record<string, unknown>;

/** What Go's HTTP client says when the registry's name does not resolve (no network). */
function offline(method: string, url: string, host: string): string {
  return `${method} "${url}": dial tcp: lookup ${host}: no such host`;
}

/** pull, push and create: progress lines then success; pull and create add the model. */
export function manage(core: Core, ctx: Ctx): Response {
  const b = bind(bodyText(ctx), "api.PullRequest", NAMED);
  if ("error" in b) return json(400, { error: b.error });
  const r = b.value;
  const name = String(r.model || r.name || "");
  if (!name) {
    return json(400, {
      error: ctx.path === "/api/push" ? "model is required" : "invalid model name",
    });
  }
  const statuses = ctx.path === "/api/push"
    ? push(core, name)
    : pullOrCreate(core, ctx.path, fullName(name), r.from);
  if (r.stream === false) {
    // waitForStream: the last status, or the error as a 500; its content type has no charset.
    const last = statuses.at(-1)!;
    return json("error" in last ? 500 : 200, last, { "content-type": "application/json" });
  }
  return new Response(statuses.map((s) => JSON.stringify(s) + "\n").join(""), {
    headers: { "content-type": "application/x-ndjson" },
  });
}

function push(core: Core, name: string): Status[] {
  const existing = core.catalog.get(name);
  if (!existing) return [{ status: "retrieving manifest" }, { error: `model "${name}" not found` }];
  const registry = registryOf(name);
  if (!core.cfg.online) {
    const blob = `${registry.repo}/blobs/sha256:${existing.digest}`;
    return [{ status: "retrieving manifest" }, { error: offline("Head", blob, registry.host) }];
  }
  return [
    { status: "retrieving manifest" },
    {
      status: `pushing ${existing.digest.slice(0, 12)}`,
      digest: `sha256:${existing.digest}`,
      total: existing.size,
      completed: existing.size,
    },
    { status: "pushing manifest" },
    { status: "success" },
  ];
}

function pullOrCreate(core: Core, path: string, full: string, fromField: unknown): Status[] {
  const existing = core.catalog.get(full);
  const fromName = typeof fromField === "string" && fromField !== "" ? fromField : undefined;
  const from = fromName ? core.catalog.get(fromName) : undefined;
  if (fromName && !from) return [{ error: `model "${fromName}" not found` }];
  if (path === "/api/pull" && !core.cfg.online) {
    // Even a model on disk is pulled again from its manifest, which needs the registry.
    const registry = registryOf(full);
    const manifest = `${registry.repo}/manifests/${registry.tag}`;
    return [
      { status: "pulling manifest" },
      { error: `pull model manifest: ${offline("Get", manifest, registry.host)}` },
    ];
  }
  const e = core.catalog.add(existing?.name ?? full, now(), from ?? existing);
  return path === "/api/pull" ? pulled(e) : [
    { status: `using existing layer sha256:${e.digest}` },
    { status: "writing manifest" },
    { status: "success" },
  ];
}

function pulled(e: ModelEntry): Status[] {
  return [
    { status: "pulling manifest" },
    {
      status: `pulling ${e.digest.slice(0, 12)}`,
      digest: `sha256:${e.digest}`,
      total: e.size,
      completed: e.size,
    },
    { status: "verifying sha256 digest" },
    { status: "writing manifest" },
    { status: "success" },
  ];
}

export function copy(core: Core, ctx: Ctx): Response {
  const b = bind(bodyText(ctx), "api.CopyRequest", COPY);
  if ("error" in b) return json(400, { error: b.error });
  const source = String(b.value.source ?? "");
  const destination = String(b.value.destination ?? "");
  if (!source) return json(400, { error: `source "" is invalid` });
  if (!destination) return json(400, { error: `destination "" is invalid` });
  const from = core.catalog.get(source);
  if (!from) return json(404, { error: `model "${source}" not found` });
  core.catalog.add(fullName(destination), now(), from);
  return new Response(null, { status: 200 });
}

export function remove(core: Core, ctx: Ctx): Response {
  const b = bind(bodyText(ctx), "api.DeleteRequest", NAMED);
  if ("error" in b) return json(400, { error: b.error });
  const name = String(b.value.model || b.value.name || "");
  if (!name) return json(400, { error: `name "" is invalid` });
  const e = core.catalog.get(name);
  if (!e) return json(404, { error: `model '${name}' not found` });
  core.catalog.delete(e);
  return new Response(null, { status: 200 });
}

/** POST /api/blobs/sha256:… stores bytes whose digest matches; HEAD says whether it is there. */
export async function blob(core: Core, ctx: Ctx): Promise<Response> {
  const digest = decodeURIComponent(ctx.path.slice("/api/blobs/".length));
  const hex = /^sha256[:-]([0-9a-fA-F]{64})$/.exec(digest)?.[1]?.toLowerCase();
  if (hex === undefined) return json(400, { error: "invalid digest format" });
  if (ctx.req.method === "HEAD") {
    return core.blobs.has(hex)
      ? new Response(null, { status: 200 })
      : json(404, { error: `blob "${digest}" not found` });
  }
  if (core.blobs.has(hex)) return new Response(null, { status: 200 });
  const sum = new Uint8Array(await crypto.subtle.digest("SHA-256", ctx.body));
  const got = Array.from(sum, (x) => x.toString(16).padStart(2, "0")).join("");
  if (got !== hex) {
    return json(400, { error: `digest mismatch, expected "${digest}", got "sha256:${got}"` });
  }
  core.blobs.add(hex);
  return new Response(null, { status: 201 });
}
