// Hostile-input suite: a seeded generator (hostile_requests.ts) throws malformed, mistyped,
// oversized, deeply nested, non-UTF-8 and path-tricking requests, and abusive headers, at every
// route. foreman must answer each with a 4xx in its surface's shape (Ollama's {"error"}, OpenAI's
// under /v1) or accept what is merely unusual, never 5xx, never crash, and keep its memory bounded. Then the auth matrix, across a
// token rotation.

import assert from "node:assert/strict";
import { startForeman, waitFor } from "../../harness/foreman.ts";
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
import {
  chatOk,
  deep,
  enc,
  generator,
  isShapedError,
  MAX_BODY,
  raw,
  send,
} from "./hostile_requests.ts";

const SEED = seedFor(4_004);
const CASES = scale(500, 6000);
Deno.test(`${CASES} seeded hostile requests get 4xx in their surface's shape, no 5xx, no crash, bounded memory (seed ${SEED})`, async () => {
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
        const a = answers[j]!; // one answer per case
        const counts = byKind.get(c.kind) ?? new Map<number, number>();
        counts.set(a.status, (counts.get(a.status) ?? 0) + 1);
        byKind.set(c.kind, counts);
        const shaped = a.status < 400 || c.method === "HEAD" || isShapedError(c.path, a.text);
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
    ["GET", "/v1/models/tiny-a", undefined],
    ["POST", "/v1/chat/completions", { ...chatOk, max_tokens: 1 }],
    ["POST", "/v1/completions", { model: "tiny-a", prompt: "x", max_tokens: 1 }],
    ["POST", "/v1/embeddings", { model: "embed-e", input: "x" }],
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
        assert.ok(isShapedError(path, text), `${method} ${path}: ${text}`);
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
      assert.ok(row.right! < 500, `${route}: ${row.right}`);
      const later = after[route];
      assert.ok(later, route);
      assert.equal(later.old, 401, `${route}: the old token is refused after the rotation`);
      assert.equal(later.none, 401, route);
      assert.equal(later.wrong, 401, route);
      assert.notEqual(later.right, 401, route);
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
