// Proves the tiny GGUF models load in a real Ollama: chat, generate and embed answer, runs are
// repeatable, and the shapes the simulator imitates are what Ollama really sends.

import assert from "node:assert/strict";
import { tinyModel } from "../support/gguf.ts";
import { e2eOllamaBin, startRealOllama } from "../support/real_ollama.ts";

const bin = e2eOllamaBin();
const opts = { ignore: bin === null, sanitizeOps: false, sanitizeResources: false };

async function post(url: string, path: string, body: unknown) {
  const res = await fetch(`${url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, type: res.headers.get("content-type"), text: await res.text() };
}

Deno.test(
  "tiny models load in a real Ollama and answer chat, generate and embed",
  opts,
  async (t) => {
    const ollama = await startRealOllama({ bin: bin! });
    try {
      for (const name of ["tiny-a", "tiny-embed"]) await ollama.importModel(name, tinyModel(name));
      const deterministic = { seed: 1, temperature: 0, num_predict: 8 };

      await t.step("chat with stream:false ends in done:true with Ollama's metrics", async () => {
        const res = await post(ollama.url, "/api/chat", {
          model: "tiny-a",
          messages: [{ role: "user", content: "hello world" }],
          stream: false,
          options: deterministic,
        });
        assert.equal(res.status, 200, res.text);
        const body = JSON.parse(res.text);
        console.log("chat:", res.text);
        assert.equal(body.done, true);
        assert.equal(body.model, "tiny-a");
        assert.equal(body.message.role, "assistant");
        assert.ok(body.message.content.length > 0);
        for (const k of ["total_duration", "load_duration", "prompt_eval_count", "eval_count"]) {
          assert.equal(typeof body[k], "number", k);
        }
        assert.equal(body.eval_count, 8);
        assert.equal(body.done_reason, "length");

        const again = JSON.parse(
          (await post(ollama.url, "/api/chat", {
            model: "tiny-a",
            messages: [{ role: "user", content: "hello world" }],
            stream: false,
            options: deterministic,
          })).text,
        );
        assert.equal(again.message.content, body.message.content, "same options, same answer");
      });

      await t.step("generate streams NDJSON whose last line is done:true", async () => {
        const res = await post(ollama.url, "/api/generate", {
          model: "tiny-a",
          prompt: "the queue",
          options: deterministic,
        });
        assert.equal(res.status, 200);
        assert.equal(res.type, "application/x-ndjson");
        const lines = res.text.trimEnd().split("\n").map((l) => JSON.parse(l));
        assert.ok(lines.length >= 2);
        assert.ok(
          lines.slice(0, -1).every((l) => l.done === false && typeof l.response === "string"),
        );
        const last = lines.at(-1);
        assert.equal(last.done, true);
        assert.ok(Array.isArray(last.context));
      });

      await t.step("embed answers L2-normalised vectors", async () => {
        const res = await post(ollama.url, "/api/embed", {
          model: "tiny-embed",
          input: ["hello", "world"],
        });
        assert.equal(res.status, 200, res.text);
        const body = JSON.parse(res.text);
        assert.equal(body.embeddings.length, 2);
        assert.equal(body.embeddings[0].length, 64);
        const norm = Math.hypot(...body.embeddings[0]);
        assert.ok(Math.abs(norm - 1) < 1e-3, `norm ${norm}`);
      });

      await t.step("ps lists both models resident", async () => {
        const ps = await (await fetch(`${ollama.url}/api/ps`)).json();
        console.log("ps:", JSON.stringify(ps));
        const names = ps.models.map((m: { name: string }) => m.name).sort();
        assert.deepEqual(names, ["tiny-a:latest", "tiny-embed:latest"]);
      });
    } catch (e) {
      console.error(ollama.output().slice(-6000));
      throw e;
    } finally {
      await ollama.stop();
    }
  },
);
