// Model management (create, copy, delete, blobs, offline pull and push) and the simulator's CLI.

import assert from "node:assert/strict";
import { call, chat, ndjson, type Obj, post, withSim } from "./helpers.ts";

Deno.test("create, copy and delete change the model list; blobs check their digest", async () => {
  await withSim({}, async (sim) => {
    const names = async () =>
      ((await (await fetch(sim.url + "/api/tags")).json()).models as Obj[]).map((m) => m.name);
    const created = await ndjson(await post(sim, "/api/create", { model: "mine", from: "tiny-a" }));
    assert.deepEqual(created.at(-1), { status: "success" });
    assert.equal((await names())[0], "mine:latest");
    assert.equal(
      (await post(sim, "/api/copy", { source: "mine", destination: "copy" })).status,
      200,
    );
    assert.ok((await names()).includes("copy:latest"));
    const del = await fetch(sim.url + "/api/delete", {
      method: "DELETE",
      body: JSON.stringify({ model: "mine" }),
    });
    assert.equal(del.status, 200);
    await del.body?.cancel();
    assert.ok(!(await names()).includes("mine:latest"));
    const [status] = await call(sim, "/api/chat", chat("copy", { stream: false }));
    assert.equal(status, 200);

    const bytes = new TextEncoder().encode("GGUF tiny");
    const hex = Array.from(
      new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)),
      (b) => b.toString(16).padStart(2, "0"),
    ).join("");
    const blob = `${sim.url}/api/blobs/sha256:${hex}`;
    assert.equal((await fetch(blob, { method: "HEAD" })).status, 404);
    const up = await fetch(blob, { method: "POST", body: bytes });
    assert.equal(up.status, 201);
    await up.body?.cancel();
    assert.equal((await fetch(blob, { method: "HEAD" })).status, 200);
    const bad = await fetch(`${sim.url}/api/blobs/sha256:${"0".repeat(64)}`, {
      method: "POST",
      body: bytes,
    });
    assert.equal(bad.status, 400);
    assert.match((await bad.json()).error, /digest mismatch/);
  });
});

Deno.test("offline (the default), pull and push fail as Ollama without network does; online they succeed", async () => {
  await withSim({}, async (sim) => {
    const dns = (method: string, url: string) =>
      `${method} "${url}": dial tcp: lookup registry.ollama.ai: no such host`;
    const manifest = "https://registry.ollama.ai/v2/library/tiny-a/manifests/latest";
    const res = await post(sim, "/api/pull", { model: "tiny-a", stream: false });
    assert.equal(res.status, 500);
    assert.equal(res.headers.get("content-type"), "application/json");
    assert.deepEqual(await res.json(), { error: `pull model manifest: ${dns("Get", manifest)}` });
    assert.deepEqual(await ndjson(await post(sim, "/api/pull", { model: "someone/fresh:v2" })), [
      { status: "pulling manifest" },
      {
        error: `pull model manifest: ${
          dns("Get", "https://registry.ollama.ai/v2/someone/fresh/manifests/v2")
        }`,
      },
    ]);
    const [status, pushed] = await call(sim, "/api/push", { model: "tiny-a", stream: false });
    assert.equal(status, 500);
    assert.match(
      pushed.error as string,
      /^Head "https:\/\/registry\.ollama\.ai\/v2\/library\/tiny-a\/blobs\/sha256:[0-9a-f]{64}": dial tcp: lookup registry\.ollama\.ai: no such host$/,
    );
    const names = ((await (await fetch(sim.url + "/api/tags")).json()).models as Obj[])
      .map((m) => m.name);
    assert.ok(!names.includes("someone/fresh:v2"));
  });
  await withSim({ online: true }, async (sim) => {
    const [, pulled] = await call(sim, "/api/pull", { model: "fresh", stream: false });
    assert.deepEqual(pulled, { status: "success" });
    const [, pushed] = await call(sim, "/api/push", { model: "fresh", stream: false });
    assert.deepEqual(pushed, { status: "success" });
    const [status] = await call(sim, "/api/chat", chat("fresh", { stream: false }));
    assert.equal(status, 200);
  });
});

Deno.test({
  name: "the CLI prints its URL as one JSON line and exits cleanly on SIGTERM",
  ignore: Deno.permissions.querySync({ name: "run" }).state !== "granted",
  async fn() {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net",
        new URL("../../sim/main.ts", import.meta.url).pathname,
        "--port",
        "0",
        "--models",
        "a,b",
        "--load-ms",
        "5",
      ],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    while (!out.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
    }
    const { listening } = JSON.parse(out);
    assert.match(listening, /^http:\/\/127\.0\.0\.1:\d+$/);
    const tags = await (await fetch(listening + "/api/tags")).json();
    assert.deepEqual(tags.models.map((m: Obj) => m.name), ["a:latest", "b:latest"]);
    child.kill("SIGTERM");
    await reader.cancel();
    assert.equal((await child.status).code, 0);
  },
});
