// Ollama's names and defaults as its clients rely on them, through a real foreman process: long
// model names, "stream": null, the older `name` field of /api/show, the target's errors on /api/ps,
// and `ollama stop`'s unload request, which foreman refuses because it manages residency itself.

import assert from "node:assert/strict";
import { normalizeModel, sameModel } from "../src/ollama/models.ts";
import { type ForemanProcess, startForeman } from "../harness/foreman.ts";
import { HostileTarget } from "./support/hostile_target.ts";
import { startStack } from "./support/stack.ts";

async function post(fm: ForemanProcess, path: string, body: unknown) {
  const res = await fetch(fm.url + path, {
    method: "POST",
    headers: fm.headers({ "content-type": "application/json" }),
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  return {
    status: res.status,
    type: res.headers.get("content-type"),
    id: res.headers.get("x-foreman-job-id"),
    lines: text.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l)),
  };
}

async function getJson(fm: ForemanProcess, path: string) {
  const res = await fetch(fm.url + path, { headers: fm.headers() });
  return { status: res.status, json: await res.json() };
}

const ask = { role: "user", content: "hi" };

Deno.test("a model's short, library/ and registry names are one model, as in Ollama", () => {
  for (
    const name of ["tiny", "tiny:latest", "library/tiny", "registry.ollama.ai/library/tiny:latest"]
  ) {
    assert.equal(normalizeModel(name), "tiny:latest", name);
  }
  assert.equal(normalizeModel("registry.ollama.ai/library/tiny:q4"), "tiny:q4");
  assert.equal(normalizeModel("someone/tiny"), "someone/tiny:latest");
  assert.equal(normalizeModel("registry.ollama.ai/someone/tiny"), "someone/tiny:latest");
  assert.equal(normalizeModel("hf.co/org/repo:Q4_K_M"), "hf.co/org/repo:Q4_K_M");
  assert.equal(normalizeModel("localhost:5000/tiny"), "localhost:5000/tiny:latest");
  assert.ok(sameModel("library/tiny-a", "tiny-a:latest"));
  assert.ok(!sameModel("someone/tiny-a", "tiny-a"));
});

Deno.test("library/ and registry.ollama.ai/library/ names are served, stored under the short name and run without another load", async () => {
  const { sim, fm, close } = await startStack();
  try {
    const first = await post(fm, "/api/chat", { model: "tiny-a", messages: [ask], stream: false });
    assert.equal(first.status, 200);
    const loads = sim.loads().length;
    for (const model of ["library/tiny-a", "registry.ollama.ai/library/tiny-a:latest"]) {
      const r = await post(fm, "/api/chat", { model, messages: [ask], stream: false });
      assert.equal(r.status, 200, `${model}: ${JSON.stringify(r.lines)}`);
      assert.equal(r.lines[0].done, true);
      assert.equal(r.lines[0].model, model, "the answer echoes the name as the target does");
      const job = await getJson(fm, `/jobs/${r.id}`);
      assert.equal(job.json.model, "tiny-a:latest", "the job row holds the canonical name");
    }
    const queued = await post(fm, "/jobs", { model: "library/tiny-a", messages: [ask] });
    assert.equal(queued.status, 202);
    assert.equal(
      (await getJson(fm, `/jobs/${queued.lines[0].job_id}`)).json.model,
      "tiny-a:latest",
    );
    assert.equal(sim.loads().length, loads, "the same resident model served every spelling");
  } finally {
    await close();
  }
});

Deno.test('"stream": null means the default: the answer streams as NDJSON', async () => {
  const { fm, close } = await startStack();
  try {
    const r = await post(fm, "/api/chat", { model: "tiny-a", messages: [ask], stream: null });
    assert.equal(r.status, 200, JSON.stringify(r.lines));
    assert.equal(r.type, "application/x-ndjson");
    assert.ok(r.lines.length > 1);
    assert.equal(r.lines.at(-1).done, true);
    const g = await post(fm, "/api/generate", { model: "tiny-a", prompt: "x", stream: null });
    assert.equal(g.status, 200);
    assert.equal(g.lines.at(-1).done, true);
  } finally {
    await close();
  }
});

Deno.test("an unload request (keep_alive 0 with nothing to generate) is refused with 409 and leaves no job", async () => {
  const { sim, fm, close } = await startStack();
  try {
    assert.equal((await post(fm, "/api/generate", { model: "tiny-a", prompt: "x" })).status, 200);
    const jobsBefore = (await getJson(fm, "/jobs?limit=500")).json.jobs.length;
    const unloads: [string, Record<string, unknown>][] = [
      ["/api/generate", { model: "tiny-a", keep_alive: 0 }],
      ["/api/generate", { model: "tiny-a", prompt: "", keep_alive: "0" }],
      ["/api/chat", { model: "tiny-a", messages: [], keep_alive: "0s" }],
      ["/api/chat", { model: "tiny-a", keep_alive: 0 }],
      ["/jobs", { model: "tiny-a", messages: [], keep_alive: 0 }],
    ];
    for (const [path, body] of unloads) {
      const r = await post(fm, path, body);
      assert.equal(r.status, 409, `${path} ${JSON.stringify(body)}: ${JSON.stringify(r.lines)}`);
      assert.match(r.lines[0].error, /foreman manages model residency/);
      assert.equal(r.id, null);
    }
    assert.equal((await getJson(fm, "/jobs?limit=500")).json.jobs.length, jobsBefore);
    assert.deepEqual(sim.unloads(), [], "the model stayed loaded");

    // A load request, and keep_alive 0 with something to generate, are not unload requests.
    const load = await post(fm, "/api/generate", { model: "tiny-a", keep_alive: "5m" });
    assert.equal(load.status, 200);
    assert.equal(load.lines.at(-1).done_reason, "load");
    const work = await post(fm, "/api/generate", {
      model: "tiny-a",
      prompt: "x",
      keep_alive: 0,
      stream: false,
    });
    assert.equal(work.status, 200);
    assert.equal(work.lines[0].done, true);
  } finally {
    await close();
  }
});

Deno.test("/api/show takes the older name field and checks whichever field is present", async () => {
  const { fm, close } = await startStack();
  try {
    const byName = await post(fm, "/api/show", { name: "tiny-a" });
    assert.equal(byName.status, 200);
    assert.ok(byName.lines[0].details);
    assert.equal((await post(fm, "/api/show", { model: "", name: "tiny-a" })).status, 200);
    const none = await post(fm, "/api/show", { verbose: true });
    assert.equal(none.status, 400);
    assert.deepEqual(none.lines[0], { error: "model is required" });
    const wrong = await post(fm, "/api/show", { name: 5 });
    assert.equal(wrong.status, 400);
    assert.deepEqual(wrong.lines[0], { error: "model must be a string" });
  } finally {
    await close();
  }
});

Deno.test("an error status from the target on /api/ps is relayed in Ollama's shape", async () => {
  const target = HostileTarget.start();
  const fm = await startForeman({ ollamaUrl: target.url });
  try {
    for (const [status, error] of [[403, "forbidden by the proxy"], [500, "boom"]] as const) {
      target.on("/api/ps", () => Response.json({ error }, { status }));
      const r = await getJson(fm, "/api/ps");
      assert.equal(r.status, status);
      assert.deepEqual(r.json, { error });
    }
  } finally {
    await fm.stop();
    await target.close();
  }
});
