// docs/scaling.md, run: LiteLLM's proxy, started with the shipped deploy/litellm/config.yaml, in
// front of two real foremans on two simulated GPU boxes with different models. Chat for each
// model lands on its own foreman's queue and box; embeddings reach the right foreman without a
// token; with one foreman down a caller gets a clear error, or another model if it asked for one.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { type ForemanProcess, freePort, startForeman, waitFor } from "../../harness/foreman.ts";
import { OllamaSim } from "../../sim/mod.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const bin = Deno.env.get("LITELLM_BIN") ?? null;
if (!bin) {
  console.log("router tests skipped: LITELLM_BIN is not set (deno task test:router sets it)");
}

const tier = { ignore: bin === null, sanitizeOps: false, sanitizeResources: false };

interface LiteLLM {
  url: string;
  key: string;
  output(): string;
  stop(): Promise<void>;
}

async function startLiteLLM(env: Record<string, string>): Promise<LiteLLM> {
  const port = freePort();
  const key = `sk-${crypto.randomUUID().replaceAll("-", "")}${crypto.randomUUID().slice(0, 8)}`;
  const child = new Deno.Command(bin!, {
    args: [
      "--config",
      `${ROOT}deploy/litellm/config.yaml`,
      "--host",
      "127.0.0.1",
      "--port",
      `${port}`,
    ],
    env: {
      ...env,
      LITELLM_MASTER_KEY: key,
      // The model price list is otherwise fetched from the internet at every start.
      LITELLM_LOCAL_MODEL_COST_MAP: "True",
      PYTHONUNBUFFERED: "1",
      NO_COLOR: "1",
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s.pipeThrough(new TextDecoderStream())) out += chunk;
  };
  const pumping = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // already exited
    }
    const killer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // exited meanwhile
      }
    }, 10_000);
    await child.status;
    clearTimeout(killer);
    await pumping;
  };
  const url = `http://127.0.0.1:${port}`;
  try {
    await Promise.race([
      // LiteLLM's proxy imports a lot of Python before it listens: seconds, more on a busy box.
      waitFor(async () => {
        const res = await fetch(`${url}/health/liveliness`);
        await res.body?.cancel();
        return res.ok;
      }, { timeout: 120_000, interval: 250, what: "LiteLLM's proxy to listen" }),
      child.status.then((s) => {
        throw new Error(`litellm exited with ${s.code} before listening:\n${out}`);
      }),
    ]);
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, key, output: () => out, stop };
}

interface Box {
  sim: OllamaSim;
  fm: ForemanProcess;
}

async function startBox(models: string[]): Promise<Box> {
  const sim = await OllamaSim.start({ models, loadMs: 5, tokenMs: 1 });
  const fm = await startForeman({ ollamaUrl: sim.url });
  return { sim, fm };
}

/** Models of the jobs a foreman holds, oldest first. */
async function jobModels(fm: ForemanProcess): Promise<string[]> {
  const res = await fetch(`${fm.url}/jobs?limit=100`, { headers: fm.headers() });
  assert.equal(res.status, 200);
  const body = await res.json() as { jobs: { model: string }[] };
  return body.jobs.map((j) => j.model).reverse();
}

/** The models a simulated box was asked to chat with or embed for (model loads left out). */
function targetRequests(sim: OllamaSim, path: string): string[] {
  return sim.requests.filter((r) => {
    const body = r.body as { messages?: unknown[]; input?: unknown };
    return r.method === "POST" && r.path === path &&
      (body.messages?.length || body.input !== undefined);
  }).map((r) => (r.body as { model: string }).model);
}

/** foreman's count of answers with a 4xx status (a refused request leaves no job). */
async function refused(fm: ForemanProcess): Promise<number> {
  const text = await (await fetch(`${fm.url}/metrics`, { headers: fm.headers() })).text();
  return Number(/^foreman_http_requests_total\{code="4xx"\} (\S+)$/m.exec(text)?.[1] ?? 0);
}

async function call(
  router: LiteLLM,
  path: string,
  body: Record<string, unknown>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(router.url + path, {
    method: "POST",
    headers: { authorization: `Bearer ${router.key}`, "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(60_000),
  });
  return { status: res.status, body: await res.json() };
}

const chat = (model: string, extra: Record<string, unknown> = {}) => ({
  model,
  messages: [{ role: "user", content: "hello" }],
  ...extra,
});

Deno.test({
  name: "LiteLLM routes each model to its own foreman with that foreman's token",
  ...tier,
  fn: async (t) => {
    const a = await startBox(["llama3.2", "nomic-embed-text"]);
    const b = await startBox(["qwen2.5-coder", "mxbai-embed-large"]);
    let router: LiteLLM | undefined;
    let failed = true;
    try {
      const started = Date.now();
      router = await startLiteLLM({
        FOREMAN_A_URL: a.fm.url,
        FOREMAN_A_TOKEN: a.fm.token,
        FOREMAN_B_URL: b.fm.url,
        FOREMAN_B_TOKEN: b.fm.token,
      });
      console.log(
        `  LiteLLM's proxy listened after ${((Date.now() - started) / 1000).toFixed(1)} s`,
      );

      await t.step("chat for each model lands on that model's foreman and box", async () => {
        const first = await call(router!, "/v1/chat/completions", chat("llama3.2"));
        assert.equal(first.status, 200, JSON.stringify(first.body));
        const choices = first.body.choices as { message: { content: string } }[];
        assert.equal(choices[0]!.message.content, "w1 w2 w3 w4 w5 w6 w7 w8");
        const second = await call(router!, "/v1/chat/completions", chat("qwen2.5-coder"));
        assert.equal(second.status, 200, JSON.stringify(second.body));
        // Streaming goes through foreman's queue the same way.
        const res = await fetch(router!.url + "/v1/chat/completions", {
          method: "POST",
          headers: { authorization: `Bearer ${router!.key}`, "content-type": "application/json" },
          body: JSON.stringify(chat("qwen2.5-coder", { stream: true })),
          signal: AbortSignal.timeout(60_000),
        });
        assert.equal(res.status, 200);
        const sse = await res.text();
        assert.match(sse, /"content":"w1"/);
        assert.match(sse, /data: \[DONE\]/);

        assert.deepEqual(await jobModels(a.fm), ["llama3.2:latest"]);
        assert.deepEqual(await jobModels(b.fm), ["qwen2.5-coder:latest", "qwen2.5-coder:latest"]);
        assert.deepEqual(targetRequests(a.sim, "/api/chat"), ["llama3.2"]);
        assert.deepEqual(targetRequests(b.sim, "/api/chat"), ["qwen2.5-coder", "qwen2.5-coder"]);
        // foreman, not LiteLLM, spoke to each box.
        const sent = b.sim.requests.find((r) => r.path === "/api/chat")!;
        assert.equal(sent.headers.get("authorization"), null, "no caller token reaches the box");
      });

      await t.step(
        "embeddings reach the right foreman, which refuses them for want of a token",
        async () => {
          // LiteLLM 1.108's ollama/ embedding provider ignores api_key (docs/scaling.md).
          const before = [await refused(a.fm), await refused(b.fm)];
          const ea = await call(router!, "/v1/embeddings", {
            model: "nomic-embed-text",
            input: "x",
          });
          assert.equal(ea.status, 401, JSON.stringify(ea.body));
          assert.match(JSON.stringify(ea.body), /missing bearer token/);
          assert.deepEqual([await refused(a.fm), await refused(b.fm)], [before[0]! + 1, before[1]]);
          const eb = await call(router!, "/v1/embeddings", {
            model: "mxbai-embed-large",
            input: "x",
          });
          assert.equal(eb.status, 401, JSON.stringify(eb.body));
          assert.deepEqual([await refused(a.fm), await refused(b.fm)], [
            before[0]! + 1,
            before[1]! + 1,
          ]);
          assert.deepEqual(targetRequests(a.sim, "/api/embed"), []);
          assert.deepEqual(targetRequests(b.sim, "/api/embed"), []);
        },
      );

      await t.step(
        "with one foreman down, a caller gets a clear error or the fallback it asked for",
        async () => {
          await b.fm.stop();
          const t0 = Date.now();
          const down = await call(router!, "/v1/chat/completions", chat("qwen2.5-coder"));
          const errorMs = Date.now() - t0;
          assert.equal(down.status, 500, JSON.stringify(down.body));
          const error = down.body.error as { message: string; type: string };
          assert.match(error.message, /APIConnectionError/);
          assert.match(error.message, /Cannot connect to host/);
          assert.match(error.message, /model group 'qwen2.5-coder'/);
          // The other foreman is untouched.
          const up = await call(router!, "/v1/chat/completions", chat("llama3.2"));
          assert.equal(up.status, 200);
          // A caller that names a fallback model is served by the other foreman.
          const fallback = await call(
            router!,
            "/v1/chat/completions",
            chat("qwen2.5-coder", { fallbacks: ["llama3.2"] }),
          );
          assert.equal(fallback.status, 200, JSON.stringify(fallback.body));
          assert.deepEqual(await jobModels(a.fm), Array(3).fill("llama3.2:latest"));
          console.log(`  error for a stopped foreman after ${errorMs} ms`);

          // Back up: LiteLLM sends to it again (after any cooldown it imposed).
          await b.fm.restart();
          const t1 = Date.now();
          await waitFor(async () => {
            const again = await call(router!, "/v1/chat/completions", chat("qwen2.5-coder"));
            return again.status === 200;
          }, { timeout: 90_000, interval: 500, what: "LiteLLM to use the restarted foreman" });
          console.log(`  restarted foreman used again after ${Date.now() - t1} ms`);
        },
      );
      failed = false;
    } finally {
      await router?.stop();
      if (failed && router) console.log(router.output().slice(-4000));
      for (const box of [a, b]) {
        await box.fm.stop();
        await box.sim.close();
      }
    }
  },
});
