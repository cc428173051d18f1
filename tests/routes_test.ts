// The route table through a real foreman process in front of the simulator: paths match exactly,
// HEAD goes wherever GET goes, /healthz keeps its detail for token holders, and GET /jobs and the
// job routes take exactly the values docs/openapi.yaml allows.

import assert from "node:assert/strict";
import { type ForemanProcess, waitFor } from "../harness/foreman.ts";
import { startStack } from "./support/stack.ts";

async function call(
  fm: ForemanProcess,
  method: string,
  path: string,
  options: { body?: string; auth?: boolean } = {},
): Promise<{ status: number; headers: Headers; text: string }> {
  const res = await fetch(fm.url + path, {
    method,
    headers: options.auth === false ? {} : fm.headers(),
    body: options.body,
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

const CHAT = JSON.stringify({ model: "tiny-a", messages: [{ role: "user", content: "hi" }] });

Deno.test("paths that only start like a route are 404 in Ollama's shape and create nothing", async () => {
  const { fm, close } = await startStack({ args: ["--allow-model-management"] });
  try {
    const id = JSON.parse((await call(fm, "POST", "/jobs", { body: CHAT })).text).job_id;
    const misses: [string, string][] = [
      ["POST", "/jobsXYZ"],
      ["POST", "/jobs.json"],
      ["GET", "/jobs.json"],
      ["GET", "/jobsXYZ"],
      ["POST", "/jobs/"],
      ["GET", "/jobs/"],
      ["GET", `/jobs/${id}/`],
      ["GET", `/jobs/${id}/events/x`],
      ["GET", `/jobs/${id}/artifacts`],
      ["GET", `/jobs/${id}/artifacts/`],
      ["GET", `/jobs/${id}/artifacts/completion/x`],
      ["GET", `/jobs/${id}/results/completion`],
      ["GET", "/jobs//artifacts/completion"],
      ["POST", "/api/blobs/sha256:00/x"],
      ["HEAD", "/api/blobs/"],
      ["GET", "/api/tags/"],
      ["POST", "/api/chatX"],
      ["GET", "/metricsX"],
      ["GET", "/healthz/"],
    ];
    for (const [method, path] of misses) {
      const res = await call(fm, method, path, { body: method === "POST" ? CHAT : undefined });
      assert.equal(res.status, 404, `${method} ${path}`);
      if (method !== "HEAD") {
        assert.deepEqual(Object.keys(JSON.parse(res.text)), ["error"], `${method} ${path}`);
        assert.match(JSON.parse(res.text).error, /^no route for /, `${method} ${path}`);
      }
    }
    const all = JSON.parse((await call(fm, "GET", "/jobs")).text).jobs;
    assert.deepEqual(all.map((j: { job_id: string }) => j.job_id), [id], "only the real submit");
  } finally {
    await close();
  }
});

Deno.test("HEAD is answered wherever GET is, and every 405 for a GET route says GET, HEAD", async () => {
  const { fm, close } = await startStack();
  try {
    const id = JSON.parse((await call(fm, "POST", "/jobs", { body: CHAT })).text).job_id;
    await waitFor(async () =>
      JSON.parse((await call(fm, "GET", `/jobs/${id}`)).text).state === "done"
    );
    const reads = [
      "/",
      "/healthz",
      "/metrics",
      "/api/tags",
      "/api/ps",
      "/api/version",
      "/jobs",
      `/jobs/${id}`,
      `/jobs/${id}/artifacts/completion`,
    ];
    for (const path of reads) {
      const get = await call(fm, "GET", path);
      const head = await call(fm, "HEAD", path);
      assert.equal(get.status, 200, `GET ${path}`);
      assert.equal(head.status, 200, `HEAD ${path}`);
      assert.equal(head.text, "", `HEAD ${path} has no body`);
      assert.equal(head.headers.get("content-type"), get.headers.get("content-type"), path);

      const put = await call(fm, "PUT", path, { body: "{}" });
      assert.equal(put.status, 405, `PUT ${path}`);
      const allow = put.headers.get("allow")!.split(", ");
      assert.ok(allow.includes("GET") && allow.includes("HEAD"), `${path} allows ${allow}`);
      assert.equal(JSON.parse(put.text).error, `method not allowed: use ${allow.join(", ")}`);
    }
  } finally {
    await close();
  }
});

Deno.test("/healthz shows status and degraded to anyone, the rest only with a valid token", async () => {
  const { fm, close } = await startStack();
  try {
    await waitFor(async () => JSON.parse((await call(fm, "GET", "/healthz")).text).status === "ok");
    for (const authorization of [undefined, "Bearer wrong", `Bearer ${fm.token}x`]) {
      const res = await fetch(fm.url + "/healthz", {
        headers: authorization ? { authorization } : {},
      });
      assert.equal(res.status, 200, `with ${authorization}`);
      assert.deepEqual(
        await res.json(),
        { status: "ok", degraded: false },
        `with ${authorization}`,
      );
    }
    const full = JSON.parse((await call(fm, "GET", "/healthz")).text);
    assert.deepEqual(Object.keys(full).sort(), [
      "degraded",
      "queue",
      "resident",
      "status",
      "target",
      "worker_model",
    ]);
    assert.equal(full.target.version, "0.11.4");
    assert.deepEqual(full.queue, { queued: 0, running: 0 });
  } finally {
    await close();
  }
});

Deno.test("server.health_detail opens /healthz's detail to callers without a token", async () => {
  const { fm, close } = await startStack({ args: ["--health-detail"] });
  try {
    const open = await (await fetch(fm.url + "/healthz")).json();
    assert.equal(open.status, "ok");
    assert.deepEqual(open.queue, { queued: 0, running: 0 });
    assert.ok("target" in open && "resident" in open && "worker_model" in open);
  } finally {
    await close();
  }
});

Deno.test("GET /jobs refuses an empty or malformed query value with 400 naming the parameter", async () => {
  const { fm, close } = await startStack();
  try {
    const cases: [string, RegExp][] = [
      ["state=", /^invalid state '': must be one of queued, /],
      ["state=bogus", /^invalid state 'bogus'/],
      ["model=", /^invalid model '': must not be empty$/],
      ["limit=", /^invalid limit '': must be a whole number from 1 to 500$/],
      ["limit=0", /^invalid limit '0'/],
      ["before=", /^invalid before '': expected a ULID$/],
      ["before=8ZZZZZZZZZZZZZZZZZZZZZZZZZ", /^invalid before '8Z{25}': expected a ULID$/],
      ["state=done&model=", /^invalid model ''/],
    ];
    for (const [query, message] of cases) {
      const res = await call(fm, "GET", `/jobs?${query}`);
      assert.equal(res.status, 400, query);
      assert.match(JSON.parse(res.text).error, message, query);
    }
    const fine = await call(fm, "GET", "/jobs?state=done&model=tiny-a&limit=1");
    assert.equal(fine.status, 200);
  } finally {
    await close();
  }
});

Deno.test("a job ID is a ULID: the first character is 0-7, and lower case names the same job", async () => {
  const { fm, close } = await startStack();
  try {
    const id: string = JSON.parse((await call(fm, "POST", "/jobs", { body: CHAT })).text).job_id;
    const lower = await call(fm, "GET", `/jobs/${id.toLowerCase()}`);
    assert.equal(lower.status, 200);
    assert.equal(JSON.parse(lower.text).job_id, id, "answered with the canonical ID");
    for (const first of ["8", "Z"]) {
      const beyond = first + id.slice(1);
      const cases: [string, string][] = [
        ["GET", `/jobs/${beyond}`],
        ["DELETE", `/jobs/${beyond}`],
        ["GET", `/jobs/${beyond}/artifacts/completion`],
      ];
      for (const [method, path] of cases) {
        const res = await call(fm, method, path);
        assert.equal(res.status, 400, `${method} ${path}`);
        assert.match(JSON.parse(res.text).error, /^invalid job id '.+': expected a ULID$/);
      }
    }
  } finally {
    await close();
  }
});

Deno.test("a job body whose Ollama field has the wrong type is refused at submit, naming it", async () => {
  const { fm, close } = await startStack();
  try {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ prompt: 5 }, /prompt must be a string$/],
      [{ endpoint: "generate", prompt: "hi", messages: "x" }, /messages must be an array/],
      [{ tools: {} }, /tools must be an array of objects$/],
      [{ images: [1] }, /images must be an array of base64 strings$/],
      [{ format: 1 }, /format must be "json" or a JSON schema object$/],
      [{ think: "max" }, /think must be true, false, "low", "medium" or "high"$/],
      [{ keep_alive: [] }, /keep_alive must be a number or a duration string$/],
      [{ messages: [{ role: "user", content: 7 }] }, /messages\[0\]\.content must be a string$/],
      [{ messages: [{ role: "user", images: "x" }] }, /messages\[0\]\.images must be/],
    ];
    for (const [fields, message] of cases) {
      const body = JSON.stringify({ model: "tiny-a", ...fields });
      const res = await call(fm, "POST", "/jobs", { body });
      assert.equal(res.status, 400, body);
      assert.match(JSON.parse(res.text).error, message, body);
    }
    // null is "absent" for foreman's own fields, as before.
    const nulls = JSON.stringify({
      model: "tiny-a",
      endpoint: null,
      state_webhook_url: null,
      metadata: null,
      stream: "ignored",
      think: "low",
      format: { type: "object" },
      keep_alive: "5m",
    });
    assert.equal((await call(fm, "POST", "/jobs", { body: nulls })).status, 202);
    assert.equal(JSON.parse((await call(fm, "GET", "/jobs")).text).jobs.length, 1);
  } finally {
    await close();
  }
});
