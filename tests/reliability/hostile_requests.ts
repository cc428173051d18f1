// What the hostile-input suite throws at foreman: a seeded generator of malformed, mistyped,
// oversized, deeply nested, non-UTF-8 and path-tricking requests and abusive headers, each with
// the statuses that are right for it, and the two ways of sending them (fetch and a raw socket).

import type { ForemanProcess } from "../../harness/foreman.ts";
import type { Rng } from "./support.ts";

export const MAX_BODY = 256 * 1024;
const ULID_UNKNOWN = "01J00000000000000000000000";

/** One request and what may come back. */
export interface Case {
  kind: string;
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: Uint8Array | string;
  /** Statuses that are right for it. */
  expect: number[];
  /** A 5xx is right only when it relays the target's own error (Ollama answers some with 500). */
  relayed?: RegExp;
}

export const enc = new TextEncoder();
export const chatOk = {
  model: "tiny-a",
  messages: [{ role: "user", content: "hi" }],
  stream: false,
};

export function deep(depth: number, open: string, close: string, inner = "1"): string {
  return open.repeat(depth) + inner + close.repeat(depth);
}

/** The seeded generator: every call returns a new hostile request. */
export function generator(rng: Rng, ctx: { doneJob: string; webhookHost: string }) {
  const inferenceRoutes = ["/api/chat", "/api/generate", "/jobs"];
  const openaiRoutes = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"];
  const jsonRoutes = [...inferenceRoutes, "/api/embed", "/api/embeddings", ...openaiRoutes];
  const wrongTypes: [string, unknown][] = [
    ["model", 5],
    ["model", ["tiny-a"]],
    ["model", { name: "tiny-a" }],
    ["model", true],
    ["model", ""],
    ["model", "x".repeat(600)],
    ["stream", "yes"],
    ["stream", 1],
    ["options", []],
    ["options", "fast"],
  ];
  const chatWrongTypes: [string, unknown][] = [
    ["messages", { role: "user" }],
    ["messages", "hello"],
    ["messages", [1, 2]],
    ["messages", [null]],
    ["messages", [{ role: 7, content: "x" }]],
  ];
  const openaiWrongTypes: [string, unknown][] = [
    ["model", 5],
    ["model", ""],
    ["stream", "yes"],
    ["stream_options", "usage"],
    ["stream_options", { include_usage: 1 }],
    ["max_tokens", 1.5],
    ["max_tokens", "10"],
    ["seed", "s"],
    ["temperature", "hot"],
    ["top_p", [1]],
    ["stop", 5],
    ["stop", [1, 2]],
  ];
  const openaiChatWrongTypes: [string, unknown][] = [
    ["messages", []],
    ["messages", "hello"],
    ["messages", [null]],
    ["messages", [{ content: "x" }]],
    ["tools", { type: "function" }],
    ["response_format", "json"],
  ];
  const jobsWrongTypes: [string, unknown][] = [
    ["metadata", []],
    ["metadata", "tag"],
    ["endpoint", "embed"],
    ["endpoint", 3],
    ["state_webhook_url", 5],
    ["state_webhook_url", "ftp://127.0.0.1/x"],
    ["state_webhook_url", "http://evil.example/hook"],
    ["state_webhook_url", `http://user:pw@${ctx.webhookHost}/hook`],
    ["state_webhook_url", "not a url"],
  ];
  const garbage = [
    "{",
    '{"model":',
    '{"model":"tiny-a",}',
    "{'model':'tiny-a'}",
    '{"model":NaN}',
    '{"model":"tiny-a"} trailing',
    "/* c */ {}",
    "\u0000\u0001\u0002",
    "[]",
    '"string"',
    "42",
    "null",
    "true",
    "",
  ];
  const badIds = [
    "abc",
    "01J0000000000000000000000",
    "01J000000000000000000000000",
    "01J0000000000000000000000I",
    "01J0000000000000000000000U",
    "%00",
    "..%2F..%2Fetc%2Fpasswd",
    "%F0%9F%92%A9",
    "x".repeat(5000),
    "01J00000000000000000000000%20",
  ];
  const artifactNames = [
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "%2e%2e",
    "completion%00",
    "%",
    "%zz",
    "COMPLETION",
    "x".repeat(3000),
    "completion%2F..",
    "%C0%AE%C0%AE",
  ];

  const bodyCase = (kind: string, path: string, body: Uint8Array | string, expect: number[]) =>
    ({ kind, method: "POST", path, body, expect }) as Case;

  const makers: (() => Case)[] = [
    // Malformed and non-object JSON.
    () => bodyCase("malformed-json", rng.pick(jsonRoutes), rng.pick(garbage), [400]),
    // A valid body cut short at a random byte.
    () => {
      const text = JSON.stringify({ ...chatOk, options: { num_predict: 2 } });
      return bodyCase(
        "truncated-json",
        rng.pick(jsonRoutes),
        text.slice(0, rng.int(1, text.length - 1)),
        [400],
      );
    },
    // Random bytes.
    () => {
      const bytes = new Uint8Array(rng.int(1, 2000));
      for (let i = 0; i < bytes.length; i++) bytes[i] = rng.int(0, 255);
      return bodyCase("random-bytes", rng.pick(jsonRoutes), bytes, [400]);
    },
    // Wrong types for the fields foreman checks.
    () => {
      const path = rng.pick(inferenceRoutes);
      const pool = [...wrongTypes, ...(path !== "/api/generate" ? chatWrongTypes : [])];
      if (path === "/jobs") pool.push(...jobsWrongTypes);
      const [field, value] = rng.pick(pool);
      // POST /jobs ignores `stream` (the result is stored whole), whatever its type.
      const expect = path === "/jobs" && field === "stream" ? [202] : [400];
      const text = JSON.stringify({ ...chatOk, [field]: value });
      return bodyCase(`wrong-type:${field}`, path, text, expect);
    },
    // Wrong types on the OpenAI-compatible routes, and an unknown model there.
    () => {
      const chat = rng.pick([true, false]);
      const ok = chat
        ? { model: "tiny-a", messages: [{ role: "user", content: "hi" }], max_tokens: 2 }
        : { model: "tiny-a", prompt: "hi", max_tokens: 2 };
      const pool = [...openaiWrongTypes, ...(chat ? openaiChatWrongTypes : [["prompt", 5]])];
      const [field, value] = rng.pick(pool as [string, unknown][]);
      const path = chat ? "/v1/chat/completions" : "/v1/completions";
      return bodyCase(
        `openai-wrong-type:${field}`,
        path,
        JSON.stringify({ ...ok, [field]: value }),
        [
          400,
        ],
      );
    },
    () =>
      bodyCase(
        "openai-unknown-model",
        rng.pick(["/v1/chat/completions", "/v1/completions"]),
        JSON.stringify({ model: "nope", prompt: "x", messages: [{ role: "user", content: "x" }] }),
        [404],
      ),
    // Wrong types foreman leaves to the target: the target's 400, or success.
    () => {
      const [field, value] = rng.pick<[string, unknown]>([
        ["format", 5],
        ["keep_alive", { forever: true }],
        ["tools", "all"],
        ["think", "maybe"],
        ["options", { num_predict: "many" }],
      ]);
      const path = rng.pick(["/api/chat", "/jobs"]);
      const body = { ...chatOk, options: { num_predict: 2 }, [field]: value };
      return {
        ...bodyCase(`target-decides:${field}`, path, JSON.stringify(body), [200, 202, 400, 500]),
        relayed: /must be of type|invalid/,
      };
    },
    // Unknown fields, prototype keys: ignored, as Ollama does.
    () => {
      const extra = rng.pick([
        '"zzz":{"a":[1,2,3]}',
        '"__proto__":{"polluted":true}',
        '"constructor":{"prototype":{"x":1}}',
        '"model2":"tiny-b"',
      ]);
      const path = rng.pick(["/api/chat", "/jobs"]);
      const text = `{"model":"tiny-a","stream":false,"options":{"num_predict":2},` +
        `"messages":[{"role":"user","content":"x"}],${extra}}`;
      return bodyCase("unknown-fields", path, text, path === "/jobs" ? [202] : [200]);
    },
    // Over the body limit, declared or streamed.
    () => {
      const size = MAX_BODY + rng.int(1, 4 * MAX_BODY);
      const text = JSON.stringify({
        ...chatOk,
        messages: [{ role: "user", content: "x".repeat(size) }],
      });
      return bodyCase("huge-body", rng.pick(jsonRoutes), text, [413]);
    },
    // Nested far deeper than any request needs, inside a body under the size limit.
    () => {
      const field = rng.pick(["format", "options", "metadata", "messages"]);
      const object = field === "options" || field === "metadata";
      // Under the body limit: 5 bytes a level for objects, 2 for arrays.
      const depth = rng.int(2_000, Math.floor((MAX_BODY - 200) / (object ? 6 : 2)));
      const nest = object ? deep(depth, '{"a":', "}") : deep(depth, "[", "]");
      const text = `{"model":"tiny-a","stream":false,"${field}":${nest}}`;
      const path = field === "metadata" ? "/jobs" : rng.pick(["/api/chat", "/jobs"]);
      return bodyCase(`deep:${field}`, path, text, [400]);
    },
    // Invalid UTF-8 inside a JSON string.
    () => {
      const head = enc.encode('{"model":"tiny-a","messages":[{"role":"user","content":"');
      const bad = rng.pick([[0xff], [0xc3, 0x28], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf8, 0x88]]);
      const tail = enc.encode('"}],"stream":false}');
      return bodyCase(
        "invalid-utf8",
        rng.pick(jsonRoutes),
        new Uint8Array([...head, ...bad, ...tail]),
        [400],
      );
    },
    // Bad job ids.
    () => ({
      kind: "bad-ulid",
      method: rng.pick(["GET", "DELETE"]),
      path: `/jobs/${rng.pick(badIds)}`,
      expect: [400, 404],
    }),
    () => ({
      kind: "unknown-ulid",
      method: rng.pick(["GET", "DELETE"]),
      path: `/jobs/${ULID_UNKNOWN}`,
      expect: [404],
    }),
    // Path tricks in artifact names.
    () => ({
      kind: "artifact-path",
      method: rng.pick(["GET", "HEAD"]),
      path: `/jobs/${rng.pick([ctx.doneJob, ctx.doneJob.toLowerCase(), ULID_UNKNOWN])}/artifacts/${
        rng.pick(artifactNames)
      }`,
      expect: [400, 404],
    }),
    // Queries.
    () => ({
      kind: "bad-query",
      method: "GET",
      path: `/jobs?${
        rng.pick([
          "limit=0",
          "limit=-1",
          "limit=501",
          "limit=1e2",
          "limit=abc",
          "limit=99999999999999999999",
          "state=bogus",
          "state=constructor",
          "before=zzz",
          "before=" + "U".repeat(26),
        ])
      }`,
      expect: [400],
    }),
    // Wrong methods everywhere.
    () => {
      const [path, ok] = rng.pick<[string, string[]]>([
        ["/api/chat", ["POST"]],
        ["/api/embed", ["POST"]],
        ["/api/tags", ["GET", "HEAD"]],
        ["/api/ps", ["GET", "HEAD"]],
        ["/api/version", ["GET", "HEAD"]],
        ["/api/show", ["POST"]],
        ["/jobs", ["GET", "POST"]],
        [`/jobs/${ULID_UNKNOWN}`, ["GET", "DELETE"]],
        ["/metrics", ["GET"]],
        ["/v1/chat/completions", ["POST"]],
        ["/v1/models", ["GET", "HEAD"]],
        ["/healthz", ["GET", "HEAD"]],
        ["/", ["GET", "HEAD"]],
      ]);
      const method = rng.pick(
        ["PUT", "PATCH", "DELETE", "OPTIONS", "POST", "GET"].filter((m) => !ok.includes(m)),
      );
      return {
        kind: "wrong-method",
        method,
        path,
        body: method === "GET" ? undefined : "{}",
        expect: [405],
      };
    },
    // Routes that do not exist, or are refused.
    () => ({
      kind: "no-route",
      method: rng.pick(["GET", "POST"]),
      path: rng.pick([
        "/api",
        "/api/",
        "/api/chat/",
        "/apix",
        "//jobs",
        "/jobs/a/b",
        "/v1",
        "/v1/responses",
        "/v1/chat/completions/",
        "/v1/models/a/b",
        "/%2e%2e/etc/passwd",
      ]),
      body: "{}",
      expect: [404, 405],
    }),
    () => ({
      kind: "management",
      method: "POST",
      path: rng.pick([
        "/api/pull",
        "/api/push",
        "/api/create",
        "/api/copy",
        "/api/blobs/sha256:00",
      ]),
      body: '{"model":"tiny-a"}',
      expect: [403],
    }),
    // Header abuse (foreman's handler sees these; oversized ones are the HTTP server's).
    () => {
      const auth = rng.pick([
        "Basic dXNlcjpwYXNz",
        "Token abc",
        "Bearer",
        "Bearer ",
        "Bearer  a b",
        "Bearer " + "a".repeat(rng.int(1000, 6000)),
        "Bearer x, Bearer y",
        "Bearer \u00ff\u00fe",
      ]);
      return {
        kind: "bad-auth",
        method: "GET",
        path: rng.pick(["/jobs", "/api/tags", "/metrics"]),
        headers: { authorization: auth },
        expect: [401],
      };
    },
    () => ({
      kind: "junk-headers",
      method: "POST",
      path: "/api/chat",
      headers: {
        "content-type": rng.pick([
          "text/plain",
          "application/x-www-form-urlencoded",
          "image/png",
          "\u00e9",
        ]),
        "x-junk": "j".repeat(rng.int(1, 8000)),
        "idempotency-key": "k",
        "accept-encoding": "br, gzip, zstd",
      },
      body: JSON.stringify({ ...chatOk, options: { num_predict: 1 } }),
      expect: [200],
    }),
    () => ({
      kind: "bad-idempotency-key",
      method: "POST",
      path: "/jobs",
      headers: { "idempotency-key": rng.pick(["", "k".repeat(256), "k".repeat(10_000)]) },
      body: JSON.stringify(chatOk),
      expect: [400],
    }),
  ];
  return () => rng.pick(makers)();
}

export async function send(
  fm: ForemanProcess,
  c: Case,
): Promise<{ status: number; text: string; type: string | null }> {
  const headers: Record<string, string> = { ...fm.headers(), ...c.headers };
  const res = await fetch(fm.url + c.path, {
    method: c.method,
    headers,
    body: c.method === "GET" || c.method === "HEAD" ? undefined : c.body as BodyInit | undefined,
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, text: await res.text(), type: res.headers.get("content-type") };
}

/** A request on a raw socket, for what fetch will not send (true duplicate headers, bad bytes). */
export async function raw(
  port: number,
  head: Uint8Array,
): Promise<{ status: number; text: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(head);
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(64 * 1024);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    const text = new TextDecoder().decode(
      chunks.reduce((a, b) => new Uint8Array([...a, ...b]), new Uint8Array()),
    );
    return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text };
  } finally {
    conn.close();
  }
}

/** Whether `text` is an error in the shape of the surface `path` belongs to. */
export function isShapedError(path: string, text: string): boolean {
  return path === "/v1" || path.startsWith("/v1/") ? isOpenAIError(text) : isOllamaError(text);
}

export function isOpenAIError(text: string): boolean {
  try {
    const e = JSON.parse(text)?.error;
    return typeof e?.message === "string" && e.message.length > 0 && typeof e.type === "string" &&
      e.param === null && e.code === null;
  } catch {
    return false;
  }
}

export function isOllamaError(text: string): boolean {
  try {
    const v = JSON.parse(text);
    return typeof v?.error === "string" && v.error.length > 0;
  } catch {
    return false;
  }
}
