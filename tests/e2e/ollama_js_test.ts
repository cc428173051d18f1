// The official JavaScript client (npm `ollama`) pointed at foreman with a bearer header works
// unchanged against a real Ollama behind it: chat and generate streamed and not, embed, list, ps,
// show, and a 404 it can read.

import assert from "node:assert/strict";
import { Ollama } from "ollama";
import { DETERMINISTIC, e2e, withStack } from "./stack.ts";

Deno.test("the npm ollama client works through foreman with a bearer header", e2e, async (t) => {
  await withStack({}, async (s) => {
    const client = new Ollama({
      host: s.foreman.url,
      headers: { Authorization: `Bearer ${s.foreman.token}` },
    });
    const messages = [{ role: "user", content: "hello from ollama-js" }];
    let answer = "";

    await t.step("chat without streaming", async () => {
      const res = await client.chat({ model: "tiny-a", messages, options: DETERMINISTIC });
      assert.equal(res.done, true);
      assert.equal(res.eval_count, DETERMINISTIC.num_predict);
      answer = res.message.content;
      assert.ok(answer.length > 0);
    });

    await t.step("chat streaming ends with done:true and the same text", async () => {
      // ollama-js throws "Did not receive done or success response in stream." otherwise.
      const stream = await client.chat({
        model: "tiny-a",
        messages,
        options: DETERMINISTIC,
        stream: true,
      });
      let text = "";
      let last;
      for await (const part of stream) {
        text += part.message.content;
        last = part;
      }
      assert.equal(last?.done, true);
      assert.equal(text, answer);
    });

    await t.step("generate streamed and not agree", async () => {
      const whole = await client.generate({
        model: "tiny-c",
        prompt: "the worker",
        options: DETERMINISTIC,
      });
      assert.equal(whole.done, true);
      let text = "";
      for await (
        const part of await client.generate({
          model: "tiny-c",
          prompt: "the worker",
          options: DETERMINISTIC,
          stream: true,
        })
      ) text += part.response;
      assert.equal(text, whole.response);
    });

    await t.step("embed, list, ps and show", async () => {
      const emb = await client.embed({ model: "tiny-embed", input: ["a", "b", "c"] });
      assert.equal(emb.embeddings.length, 3);
      assert.equal(emb.embeddings[0]!.length, 64);
      const list = await client.list();
      assert.equal(list.models.length, 4);
      const ps = await client.ps();
      assert.ok(ps.models.some((m) => m.name === "tiny-embed:latest"));
      const show = await client.show({ model: "tiny-b" });
      assert.equal(show.details.family, "llama");
    });

    await t.step("an unknown model raises a ResponseError with status 404", async () => {
      await assert.rejects(
        client.chat({ model: "nope", messages }),
        (err: Error & { status_code?: number }) => {
          assert.equal(err.name, "ResponseError");
          assert.equal(err.status_code, 404);
          assert.match(err.message, /model ["']nope["'] not found/);
          return true;
        },
      );
    });

    await t.step("a wrong token raises a 401", async () => {
      const wrong = new Ollama({ host: s.foreman.url, headers: { Authorization: "Bearer wrong" } });
      await assert.rejects(wrong.list(), (err: Error & { status_code?: number }) => {
        assert.equal(err.status_code, 401);
        return true;
      });
    });
  });
});
