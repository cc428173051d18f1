// What the crash suites rely on: Host and Origin refusals, failNext, dropNext, stallNext, and a
// stop/restart that cuts connections and forgets residency.

import assert from "node:assert/strict";
import { call, chat, lineReader, type Obj, post, rawHttp, withSim } from "./helpers.ts";

Deno.test("a foreign Host or Origin gets 403 with an empty body", async () => {
  await withSim({}, async (sim) => {
    const foreign = await rawHttp(sim.port, "GET /api/version HTTP/1.1\r\nHost: example.com\r\n");
    assert.deepEqual(foreign, { status: 403, body: "" });
    for (const host of ["localhost:11434", "127.0.0.1", "10.1.2.3:80", "192.168.0.9", "[::1]:1"]) {
      const ok = await rawHttp(sim.port, `GET /api/version HTTP/1.1\r\nHost: ${host}\r\n`);
      assert.equal(ok.status, 200, `Host ${host} is allowed`);
    }
    const evil = await fetch(sim.url + "/api/tags", {
      headers: { origin: "https://evil.example" },
    });
    assert.equal(evil.status, 403);
    assert.equal(await evil.text(), "");
    const local = await fetch(sim.url + "/api/tags", {
      headers: { origin: "http://localhost:3000" },
    });
    assert.equal(local.status, 200);
    await local.body?.cancel();
  });
});

Deno.test("failNext answers the next requests with the given status and error", async () => {
  await withSim({}, async (sim) => {
    sim.failNext(2, 500, "boom");
    assert.deepEqual(await call(sim, "/api/chat", chat("tiny-a")), [500, { error: "boom" }]);
    assert.deepEqual(await call(sim, "/api/generate", { model: "tiny-a", prompt: "x" }), [
      500,
      { error: "boom" },
    ]);
    const [ok] = await call(sim, "/api/chat", chat("tiny-a", { stream: false }));
    assert.equal(ok, 200);

    sim.failNext(1, 503, "busy", { path: "/api/generate" });
    assert.equal((await call(sim, "/api/chat", chat("tiny-a", { stream: false })))[0], 200);
    assert.deepEqual(await call(sim, "/api/generate", { model: "tiny-a", prompt: "x" }), [
      503,
      { error: "busy" },
    ]);
  });
});

Deno.test("dropNext closes the connection after the given number of chunks", async () => {
  await withSim({}, async (sim) => {
    sim.dropNext(1, { afterChunks: 3 });
    const lines = lineReader(await post(sim, "/api/chat", chat("tiny-a")));
    const got: Obj[] = [];
    await assert.rejects(async () => {
      for (let l; (l = await lines.next());) got.push(l);
    });
    assert.equal(got.length, 3);
    assert.ok(got.every((c) => c.done === false));

    sim.dropNext(1);
    await assert.rejects(post(sim, "/api/chat", chat("tiny-a")), "no response at all");
    const [status] = await call(sim, "/api/chat", chat("tiny-a", { stream: false }));
    assert.equal(status, 200, "the model is free again afterwards");
  });
});

Deno.test("stallNext keeps the connection open and the model busy until the client leaves", async () => {
  await withSim({}, async (sim) => {
    sim.stallNext(1, { afterChunks: 2 });
    const lines = lineReader(await post(sim, "/api/chat", chat("tiny-a")));
    assert.ok(await lines.next());
    assert.ok(await lines.next());
    const third = lines.next().then((c) => c ? "data" : "end", () => "error");
    const next = call(sim, "/api/chat", chat("tiny-a", { stream: false }));
    // Nothing is supposed to happen here, so this one wait is a bounded observation window.
    const window = new Promise((r) => setTimeout(() => r("silence"), 150));
    assert.equal(await Promise.race([third, window]), "silence");
    assert.equal(sim.events.filter((e) => e.kind === "start").length, 1, "the model stays busy");
    await lines.cancel();
    assert.equal((await next)[0], 200, "leaving frees the model for the next request");
    assert.notEqual(await third, "data", "no chunk came after the stall");
  });
});

Deno.test("stop releases the port and restart listens on it again with residency forgotten", async () => {
  await withSim({ tokenMs: 10, tokens: 100 }, async (sim) => {
    await call(sim, "/api/generate", { model: "tiny-a", prompt: "" });
    const lines = lineReader(await post(sim, "/api/chat", chat("tiny-a")));
    assert.ok(await lines.next());
    await sim.stop();
    await assert.rejects(async () => {
      while (await lines.next());
    }, "a stream in flight is cut");
    await assert.rejects(fetch(sim.url + "/"), "nothing listens");
    const squatter = Deno.listen({ hostname: "127.0.0.1", port: sim.port });
    squatter.close();

    await sim.restart({ keepResidency: true });
    assert.deepEqual(sim.resident(), ["tiny-a:latest"]);
    await sim.restart();
    assert.deepEqual(sim.resident(), []);
    assert.deepEqual(sim.unloads(), ["tiny-a:latest"]);
    assert.equal(await (await fetch(sim.url + "/")).text(), "Ollama is running");
    const short = { stream: false, options: { num_predict: 1 } };
    const [status] = await call(sim, "/api/chat", chat("tiny-a", short));
    assert.equal(status, 200);
    assert.deepEqual(sim.loads(), ["tiny-a:latest", "tiny-a:latest"]);
  });
});
