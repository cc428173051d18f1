// Hostile-input suite: a seeded generator throws malformed, mistyped, oversized, deeply nested,
// non-UTF-8 and path-tricking requests, and abusive headers, at every route. foreman must answer
// each with a 4xx in Ollama's {"error"} shape (or accept what is merely unusual), never 5xx,
// never crash, and keep its memory bounded. Then the auth matrix, across a token rotation.

import assert from "node:assert/strict";
import { type ForemanProcess, startForeman, waitFor } from "../../harness/foreman.ts";
import { OllamaSim } from "../../sim/mod.ts";
import {
  alive,
  call,
  cleanup,
  Hook,
  report,
  Rng,
  rssMiB,
  scale,
  seedFor,
  stopWithin,
} from "./support.ts";

const SEED = seedFor(4_004);
const CASES = scale(500, 6000);
const MAX_BODY = 256 * 1024;
const ULID_UNKNOWN = "01J00000000000000000000000";

/** One request and what may come back. */
interface Case {
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

const enc = new TextEncoder();
const chatOk = { model: "tiny-a", messages: [{ role: "user", content: "hi" }], stream: false };

function deep(depth: number, open: string, close: string, inner = "1"): string {
  return open.repeat(depth) + inner + close.repeat(depth);
}

/** The seeded generator: every call returns a new hostile request. */
function generator(rng: Rng, ctx: { doneJob: string; webhookHost: string }) {
  const inferenceRoutes = ["/api/chat", "/api/generate", "/jobs"];
  const jsonRoutes = [...inferenceRoutes, "/api/embed", "/api/embeddings"];
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
        "/v1/chat/completions",
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

async function send(
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
async function raw(port: number, head: Uint8Array): Promise<{ status: number; text: string }> {
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

function isOllamaError(text: string): boolean {
  try {
    const v = JSON.parse(text);
    return typeof v?.error === "string" && v.error.length > 0;
  } catch {
    return false;
  }
}

Deno.test(`${CASES} seeded hostile requests get 4xx in Ollama's shape, no 5xx, no crash, bounded memory (seed ${SEED})`, async () => {
  const rng = new Rng(SEED);
  const sim = await OllamaSim.start({ loadMs: 2, tokenMs: 1 });
  const fm = await startForeman({
    ollamaUrl: sim.url,
    args: [
      "--poll-interval",
      "1s",
      "--max-body",
      String(MAX_BODY),
      "--webhook-hosts",
      "127.0.0.1:9",
    ],
  });
  try {
    const done = await call(fm, "POST", "/jobs", { ...chatOk, options: { num_predict: 2 } });
    const doneJob = String(done.json.job_id);
    await waitFor(async () => (await call(fm, "GET", `/jobs/${doneJob}`)).json.state === "done");
    const next = generator(rng, { doneJob, webhookHost: "127.0.0.1:9" });
    const rssStart = rssMiB(fm.pid);
    let rssPeak = rssStart;
    const byKind = new Map<string, Map<number, number>>();
    const wrong: string[] = [];
    let relayed5xx = 0;
    const batch = 8;
    for (let i = 0; i < CASES; i += batch) {
      const cases = Array.from({ length: Math.min(batch, CASES - i) }, next);
      const answers = await Promise.all(cases.map((c) => send(fm, c)));
      cases.forEach((c, j) => {
        const a = answers[j];
        const counts = byKind.get(c.kind) ?? new Map<number, number>();
        counts.set(a.status, (counts.get(a.status) ?? 0) + 1);
        byKind.set(c.kind, counts);
        const shaped = a.status < 400 || c.method === "HEAD" || isOllamaError(a.text);
        const fromTarget = a.status < 500 || (c.relayed?.test(a.text) ?? false);
        if (a.status >= 500 && fromTarget) relayed5xx++;
        if (!c.expect.includes(a.status) || !shaped || !fromTarget) {
          wrong.push(
            `${c.kind} ${c.method} ${c.path.slice(0, 80)} -> ${a.status} ${a.text.slice(0, 160)}`,
          );
        }
      });
      rssPeak = Math.max(rssPeak, rssMiB(fm.pid));
    }
    assert.ok(alive(fm.pid), "foreman survived");
    assert.deepEqual(wrong.slice(0, 20), [], `${wrong.length} answers were wrong`);

    // Duplicate Authorization headers on the wire, one of them right: refused, not merged.
    const dup = await raw(
      fm.port,
      enc.encode(
        `GET /jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${fm.token}\r\n` +
          `Authorization: Bearer wrong\r\nConnection: close\r\n\r\n`,
      ),
    );
    assert.equal(dup.status, 401);
    // Bytes that are not UTF-8 in the path, and oversized headers: the HTTP server may refuse
    // them before foreman sees them; whatever answers, it is never 5xx and foreman lives.
    const badPath = await raw(
      fm.port,
      new Uint8Array([
        ...enc.encode("GET /jobs/"),
        0xff,
        0xfe,
        ...enc.encode(
          ` HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${fm.token}\r\nConnection: close\r\n\r\n`,
        ),
      ]),
    );
    assert.ok(
      badPath.status === 0 || (badPath.status >= 400 && badPath.status < 500),
      `${badPath.status}`,
    );
    const bigHeader = await raw(
      fm.port,
      enc.encode(
        `GET /jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${fm.token}\r\n` +
          `X-Big: ${"b".repeat(1024 * 1024)}\r\nConnection: close\r\n\r\n`,
      ),
    );
    assert.ok(bigHeader.status === 0 || bigHeader.status === 431 || bigHeader.status < 500);
    const manyHeaders = await raw(
      fm.port,
      enc.encode(
        `GET /jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${fm.token}\r\n` +
          Array.from({ length: 2000 }, (_, i) => `X-H${i}: v\r\n`).join("") +
          "Connection: close\r\n\r\n",
      ),
    );
    assert.ok(manyHeaders.status === 0 || manyHeaders.status < 500, `${manyHeaders.status}`);

    // A burst of over-limit bodies at once, then memory must come back down near where it was.
    await Promise.all(Array.from({ length: 32 }, () =>
      send(fm, {
        kind: "burst",
        method: "POST",
        path: "/api/chat",
        body: "[" + "1,".repeat(MAX_BODY) + "1]",
        expect: [413],
      })));
    rssPeak = Math.max(rssPeak, rssMiB(fm.pid));
    assert.ok(alive(fm.pid), "foreman survived the raw requests");
    const ok = await call(fm, "POST", "/api/chat", { ...chatOk, options: { num_predict: 2 } });
    assert.equal(ok.status, 200, "and still serves");
    const rssEnd = rssMiB(fm.pid);
    assert.ok(rssPeak - rssStart < 160, `memory grew from ${rssStart} to ${rssPeak} MiB`);
    await report("hostile-input", {
      seed: SEED,
      cases: CASES,
      kinds: byKind.size,
      foreman_5xx: wrong.filter((w) => / -> 5\d\d /.test(w)).length,
      target_5xx_relayed: relayed5xx,
      rss_start_mib: Math.round(rssStart),
      rss_peak_mib: Math.round(rssPeak),
      rss_end_mib: Math.round(rssEnd),
      raw: {
        duplicate_auth: dup.status,
        non_utf8_path: badPath.status,
        header_1mib: bigHeader.status,
        headers_2000: manyHeaders.status,
      },
    });
    await stopWithin(fm);
  } finally {
    await fm.kill();
    await sim.close();
  }
});

/** Every protected route with a request that is fine apart from its credentials. */
function protectedRoutes(jobId: string): [string, string, unknown][] {
  return [
    ["GET", "/api/version", undefined],
    ["GET", "/api/tags", undefined],
    ["GET", "/api/ps", undefined],
    ["POST", "/api/show", { model: "tiny-a" }],
    ["POST", "/api/chat", { ...chatOk, options: { num_predict: 1 } }],
    ["POST", "/api/generate", {
      model: "tiny-a",
      prompt: "x",
      stream: false,
      options: { num_predict: 1 },
    }],
    ["POST", "/api/embed", { model: "embed-e", input: "x" }],
    ["POST", "/api/embeddings", { model: "embed-e", prompt: "x" }],
    ["POST", "/api/pull", { model: "tiny-a" }],
    ["POST", "/api/push", { model: "tiny-a" }],
    ["POST", "/api/create", { model: "x" }],
    ["POST", "/api/copy", { source: "tiny-a", destination: "x" }],
    ["DELETE", "/api/delete", { model: "x" }],
    ["POST", "/api/blobs/sha256:00", undefined],
    ["GET", "/jobs", undefined],
    ["POST", "/jobs", { ...chatOk, options: { num_predict: 1 } }],
    ["GET", `/jobs/${jobId}`, undefined],
    ["DELETE", `/jobs/${jobId}`, undefined],
    ["GET", `/jobs/${jobId}/artifacts/completion`, undefined],
    ["GET", "/metrics", undefined],
    ["GET", "/v1/models", undefined],
  ];
}

async function authMatrix(
  url: string,
  jobId: string,
  tokens: Record<string, string | undefined>,
): Promise<Record<string, Record<string, number>>> {
  const out: Record<string, Record<string, number>> = {};
  for (const [method, path, body] of protectedRoutes(jobId)) {
    const row: Record<string, number> = {};
    for (const [name, token] of Object.entries(tokens)) {
      const res = await fetch(url + path, {
        method,
        headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      row[name] = res.status;
      if (res.status === 401) {
        assert.equal(
          res.headers.get("www-authenticate"),
          'Bearer realm="foreman"',
          `${method} ${path}`,
        );
        assert.ok(isOllamaError(text), `${method} ${path}: ${text}`);
      }
    }
    out[`${method} ${path.replace(jobId, "{id}")}`] = row;
  }
  for (const [name, token] of Object.entries(tokens)) {
    const headers: Record<string, string> = token === undefined
      ? {}
      : { authorization: `Bearer ${token}` };
    assert.equal(
      await fetch(url + "/healthz", { headers }).then((r) => r.text().then(() => r.status)),
      200,
    );
    assert.equal(await (await fetch(url + "/", { headers })).text(), "Ollama is running", name);
  }
  return out;
}

Deno.test("auth matrix: every protected route refuses no token, a wrong one and a rotated-out one, and takes the right one", async () => {
  const sim = await OllamaSim.start({ loadMs: 2, tokenMs: 1 });
  const dir = await Deno.makeTempDir({ prefix: "foreman-auth-" });
  const port = (() => {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const p = (l.addr as Deno.NetAddr).port;
    l.close();
    return p;
  })();
  const newToken = "new-" + crypto.randomUUID();
  const oldToken = "old-" + crypto.randomUUID();
  const args = ["--poll-interval", "1s"];
  // During the rotation both tokens are configured.
  let fm = await startForeman({
    ollamaUrl: sim.url,
    dir,
    port,
    token: `${newToken},${oldToken}`,
    args,
  });
  try {
    const submit = await fetch(fm.url + "/jobs", {
      method: "POST",
      headers: { authorization: `Bearer ${newToken}` },
      body: JSON.stringify({ ...chatOk, options: { num_predict: 1 } }),
    });
    const jobId = (await submit.json()).job_id;
    await waitFor(async () =>
      (await (await fetch(`${fm.url}/jobs/${jobId}`, {
        headers: { authorization: `Bearer ${newToken}` },
      })).json())
        .state === "done"
    );
    const during = await authMatrix(fm.url, jobId, {
      none: undefined,
      wrong: "wrong-token",
      old: oldToken,
      right: newToken,
    });
    await stopWithin(fm);
    // The rotation ends: only the new token is configured.
    fm = await startForeman({ ollamaUrl: sim.url, dir, port, token: newToken, args });
    const after = await authMatrix(fm.url, jobId, {
      none: undefined,
      wrong: "wrong-token",
      old: oldToken,
      right: newToken,
    });
    for (const [route, row] of Object.entries(during)) {
      assert.equal(row.none, 401, route);
      assert.equal(row.wrong, 401, route);
      assert.notEqual(row.old, 401, `${route}: the old token works during the rotation`);
      assert.notEqual(row.right, 401, route);
      assert.ok(row.right < 500, `${route}: ${row.right}`);
      assert.equal(after[route].old, 401, `${route}: the old token is refused after the rotation`);
      assert.equal(after[route].none, 401, route);
      assert.equal(after[route].wrong, 401, route);
      assert.notEqual(after[route].right, 401, route);
    }
    await report("auth-matrix", {
      routes: Object.keys(during).length,
      right_token_statuses: Object.fromEntries(
        Object.entries(after).map(([r, row]) => [r, row.right]),
      ),
    });
  } finally {
    await fm.kill();
    await sim.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("JSON nested right up to the limit is served and rendered everywhere; one level more is a 400", async () => {
  const sim = await OllamaSim.start({ loadMs: 2, tokenMs: 1 });
  const hook = await Hook.start();
  const fm = await startForeman({
    ollamaUrl: sim.url,
    args: ["--poll-interval", "1s", "--webhook-hosts", hook.host],
  });
  try {
    const limit = 1000;
    // metadata sits one level inside the body object.
    const metadata = (levels: number) => JSON.parse(deep(levels - 1, '{"a":', "}"));
    const body = (levels: number) => ({
      ...chatOk,
      options: { num_predict: 1 },
      metadata: metadata(levels),
      state_webhook_url: `${hook.url}/deep`,
    });
    const over = await call(fm, "POST", "/jobs", body(limit + 1));
    assert.equal(over.status, 400);
    assert.match(over.json.error, /nested deeper than 1000 levels/);
    const chatOver = await call(fm, "POST", "/api/chat", {
      ...chatOk,
      format: JSON.parse(deep(limit, "[", "]")),
    });
    assert.equal(chatOver.status, 400);

    const at = await call(fm, "POST", "/jobs", body(limit));
    assert.equal(at.status, 202);
    const id = String(at.json.job_id);
    await waitFor(async () => (await call(fm, "GET", `/jobs/${id}`)).json.state === "done");
    assert.equal((await call(fm, "GET", "/jobs?limit=500")).status, 200);
    await waitFor(() => hook.ok().some((d) => d.event.job_id === id && d.event.state === "done"));
  } finally {
    await cleanup(() => fm.kill(), () => hook.close(), () => sim.close());
  }
});
