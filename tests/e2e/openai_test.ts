// foreman's /v1 surface in front of a real Ollama 0.11.4, driven by the official `openai` npm
// client: chat streamed and not gives what Ollama's own /v1 gives, embeddings answer from the
// pinned embedder, and after any mix of /v1 and native jobs (a native num_ctx job included, which
// makes the next /v1 job reload the model) /api/ps shows the worker model pinned. It also measures
// the two residency designs ADR-0016 weighed: /v1 relayed with a re-pin, and /v1 translated to the
// native route (whose cost at the target is a native job's).

import assert from "node:assert/strict";
import OpenAI from "openai";
import { e2e, ollamaLoads, type Stack, waitFor, withStack } from "./stack.ts";

const messages = [{ role: "user" as const, content: "hello from openai" }];
/** OpenAI's spelling of the tier's DETERMINISTIC options (greedy, 12 tokens). */
const GREEDY = { seed: 1, temperature: 0, max_tokens: 12 };

/** Years until `model`'s expires_at in Ollama's own /api/ps; -1 when it is not loaded. */
async function pinnedYears(s: Stack, model: string): Promise<number> {
  const ps = await (await s.direct("/api/ps")).json();
  const row = ps.models.find((m: { name: string }) => m.name === `${model}:latest`);
  return row ? (Date.parse(row.expires_at) - Date.now()) / (365 * 86_400_000) : -1;
}

async function idle(s: Stack): Promise<void> {
  await waitFor("foreman to be idle", async () => {
    const q = (await (await s.call("/healthz")).json()).queue;
    return q.queued + q.running === 0;
  });
}

const repinLines = (s: Stack) =>
  s.foreman.output().split("\n").filter((l) => l.includes("worker model pinned again"));

Deno.test("the openai client through foreman gets Ollama's own /v1 answers", e2e, async (t) => {
  await withStack({}, async (s) => {
    const client = new OpenAI({
      baseURL: `${s.foreman.url}/v1`,
      apiKey: s.foreman.token,
      maxRetries: 0,
    });
    let answer = "";

    await t.step("chat without streaming", async () => {
      const chat = await client.chat.completions.create({ model: "tiny-a", messages, ...GREEDY });
      assert.equal(chat.object, "chat.completion");
      assert.equal(chat.usage?.completion_tokens, GREEDY.max_tokens);
      answer = chat.choices[0]!.message.content ?? "";
      assert.ok(answer.length > 0);
      const direct = await (await s.direct("/v1/chat/completions", {
        model: "tiny-a",
        messages,
        ...GREEDY,
      })).json();
      assert.equal(
        answer,
        direct.choices[0].message.content,
        "what Ollama answers without foreman",
      );
    });

    await t.step("streamed chat ends in [DONE] with the same text and the usage", async () => {
      const res = await s.call("/v1/chat/completions", {
        body: { model: "tiny-a", messages, ...GREEDY, stream: true },
      });
      assert.equal(res.headers.get("content-type"), "text/event-stream");
      const text = await res.text();
      assert.ok(text.endsWith("data: [DONE]\n\n"), text.slice(-200));
      let streamed = "";
      for await (
        const chunk of await client.chat.completions.create({
          model: "tiny-a",
          messages,
          ...GREEDY,
          stream: true,
          stream_options: { include_usage: true },
        })
      ) {
        streamed += chunk.choices[0]?.delta.content ?? "";
        if (chunk.usage) assert.equal(chunk.usage.completion_tokens, GREEDY.max_tokens);
      }
      assert.equal(streamed, answer);
    });

    await t.step("embeddings answer from the embedder, which keeps its pin", async () => {
      await waitFor(
        "foreman to warm the embedder",
        async () => await pinnedYears(s, "tiny-embed") > 100,
      );
      const res = await client.embeddings.create({
        model: "tiny-embed",
        input: ["a", "b"],
        encoding_format: "float", // Ollama 0.11.4 sends floats whatever the client asks for
      });
      assert.equal(res.data.length, 2);
      assert.ok(res.data.every((d) => d.embedding.length === 64));
      assert.ok(await pinnedYears(s, "tiny-embed") > 100, "Ollama kept tiny-embed pinned");
    });

    await t.step("an unknown model is the SDK's NotFoundError in Ollama's words", async () => {
      await assert.rejects(
        client.chat.completions.create({ model: "nope", messages }),
        (err) =>
          err instanceof OpenAI.NotFoundError &&
          err.message === '404 model "nope" not found, try pulling it first',
      );
    });
  });
});

Deno.test(
  "Ollama 0.11.4's /v1 keeps a pin it finds, and gives a model it reloads the default 5 minutes",
  e2e,
  async () => {
    await withStack({}, async (s) => {
      const minutesLeft = async () => (await pinnedYears(s, "tiny-b")) * 365 * 24 * 60;
      const v1 = () => s.direct("/v1/chat/completions", { model: "tiny-b", messages, ...GREEDY });
      // Straight to Ollama: foreman never runs a job for tiny-b here.
      await (await s.direct("/api/generate", { model: "tiny-b", prompt: "", keep_alive: -1 }))
        .json();
      assert.ok(await minutesLeft() > 100 * 365 * 24 * 60);
      await (await v1()).json();
      assert.ok(await minutesLeft() > 100 * 365 * 24 * 60, "loaded with the same options: kept");
      await (await s.direct("/api/generate", {
        model: "tiny-b",
        prompt: "",
        keep_alive: -1,
        options: { num_ctx: 256 },
      })).json();
      await (await v1()).json();
      const left = await minutesLeft();
      assert.ok(left > 4.5 && left < 5.01, `reloaded by /v1: ${left.toFixed(2)} minutes left`);
    });
  },
);

Deno.test(
  "after any mix of /v1 and native jobs, Ollama's /api/ps shows the worker model pinned",
  e2e,
  async () => {
    await withStack({}, async (s) => {
      const v1 = () =>
        s.call("/v1/chat/completions", { body: { model: "tiny-a", messages, ...GREEDY } })
          .then((r) => r.json());
      const pinned = (what: string) =>
        waitFor(what, async () => await pinnedYears(s, "tiny-a") > 100);

      await v1();
      await idle(s);
      await pinned("tiny-a pinned after a /v1 job");
      const loadsBefore = ollamaLoads(s.ollama);

      // A native job with num_ctx reloads tiny-a (pinned by its keep_alive); the /v1 job after it
      // reloads it with the default options and Ollama's default 5 minutes.
      const native = await s.call("/api/chat", {
        body: {
          model: "tiny-a",
          messages,
          stream: false,
          options: { num_ctx: 256, num_predict: 4 },
        },
      });
      assert.equal((await native.json()).done, true);
      assert.ok(
        await pinnedYears(s, "tiny-a") > 100,
        "the native job carried foreman's keep_alive",
      );
      await v1();
      await idle(s);
      await pinned("tiny-a pinned again after the /v1 reload");
      assert.equal(ollamaLoads(s.ollama) - loadsBefore, 2, "the num_ctx reload and the /v1 reload");
      assert.ok(repinLines(s).length >= 1);

      // A mixed backlog, streamed and not, with an async /v1 job among them.
      await Promise.all([
        v1(),
        s.call("/v1/completions", { body: { model: "tiny-a", prompt: "x", max_tokens: 4 } })
          .then((r) => r.text()),
        s.call("/api/generate", {
          body: { model: "tiny-a", prompt: "x", options: { num_predict: 4 } },
        })
          .then((r) => r.text()),
        s.call("/jobs", { body: { endpoint: "openai.chat", model: "tiny-a", messages } })
          .then((r) => r.json()),
        s.call("/v1/chat/completions", {
          body: { model: "tiny-a", messages, ...GREEDY, stream: true },
        }).then((r) => r.text()),
      ]);
      await idle(s);
      await pinned("tiny-a pinned after the mix");
      assert.equal(ollamaLoads(s.ollama) - loadsBefore, 2, "no re-pin reloaded the model");
    });
  },
);

Deno.test(
  "residency designs measured: /v1 relayed with a re-pin, and the native route a translation would use",
  e2e,
  async () => {
    await withStack({}, async (s) => {
      const N = 10;
      const ROUNDS = 5;
      const timed = async (call: () => Promise<unknown>) => {
        const t0 = performance.now();
        for (let i = 0; i < N; i++) await call();
        await idle(s);
        return performance.now() - t0;
      };
      const relayed = () =>
        s.call("/v1/chat/completions", { body: { model: "tiny-a", messages, ...GREEDY } })
          .then((r) => r.json());
      // What a translating foreman would send for the same call: Ollama's middleware makes this
      // native request of it (temperature, top_p 1 and the rest as options).
      const translated = () =>
        s.call("/api/chat", {
          body: {
            model: "tiny-a",
            messages,
            stream: false,
            options: { seed: 1, temperature: 0, num_predict: 12, top_p: 1 },
          },
        }).then((r) => r.json());

      const repinned = (n: number) =>
        waitFor(`re-pin ${n}`, () => repinLines(s).length === n, 10_000);
      await relayed(); // the first load, out of both timings
      await repinned(1);
      const rounds: { relayed: number[]; translated: number[] } = { relayed: [], translated: [] };
      for (let round = 0; round < ROUNDS; round++) {
        rounds.relayed.push(await timed(relayed));
        // The re-pin comes once the worker has been idle a second, when no caller waits on it.
        await repinned(round + 2);
        assert.ok(await pinnedYears(s, "tiny-a") > 100);
        rounds.translated.push(await timed(translated));
        assert.ok(await pinnedYears(s, "tiny-a") > 100);
      }
      // After a native job with num_ctx, the next call reloads the model in both designs: the
      // runner's options differ from a /v1 call's, and from the translation's (which sets none).
      const afterNumCtx = async (call: () => Promise<unknown>) => {
        await s.call("/api/chat", {
          body: { model: "tiny-a", messages, stream: false, options: { num_ctx: 256 } },
        }).then((r) => r.json());
        const t0 = performance.now();
        await call();
        return Math.round(performance.now() - t0);
      };
      const reload = { relayed: await afterNumCtx(relayed), translated: 0 };
      await repinned(ROUNDS + 2);
      reload.translated = await afterNumCtx(translated);
      const repins = repinLines(s).map((l) => JSON.parse(l.slice(l.indexOf("{"))).ms as number);
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      console.log(
        `[e2e] ${
          JSON.stringify({
            scenario: "openai-residency",
            jobs_per_round: N,
            relayed_with_repin_ms: rounds.relayed.map(Math.round),
            translated_ms: rounds.translated.map(Math.round),
            relayed_ms_per_job: +(median(rounds.relayed) / N).toFixed(1),
            translated_ms_per_job: +(median(rounds.translated) / N).toFixed(1),
            repins: repins.length,
            repin_ms: repins,
            reload_after_num_ctx_ms: reload,
          })
        }`,
      );
      assert.equal(
        repins.length,
        ROUNDS + 2,
        "one re-pin per idle spell, none between back-to-back jobs",
      );
      assert.ok(await pinnedYears(s, "tiny-a") > 100);
    });
  },
);
