// Slow and idle clients, on raw sockets against a real foreman: a request body that stops arriving
// is given up on after FOREMAN_BODY_TIMEOUT with a 408; what Deno.serve cannot bound (a slow
// request head, a connection cap) is bounded by the nginx that compose.yaml puts in front, run
// here on loopback from deploy/nginx/nginx.conf. Without nginx that test says so in one line and
// is ignored (FOREMAN_NGINX_REQUIRED=1, set by CI, makes a missing nginx a failure). Watchers of a
// job behind that nginx have a cap of their own, so they never lock out other callers.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { freePort, startForeman, waitFor } from "../../harness/foreman.ts";
import { OllamaSim } from "../../sim/mod.ts";
import { report } from "./support.ts";
import { watchers } from "../support/watch.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

interface Held {
  /** Everything the peer sent before it closed or the wait ran out. */
  text: string;
  /** Milliseconds from the last byte written to the peer's close, or null if it stayed open. */
  closedAfter: number | null;
  /** Milliseconds from the last byte written to the first byte received, or null for none. */
  firstByteAfter: number | null;
  /** The same from the request head, written first. */
  firstByteAfterHead: number | null;
  status: number | null;
}

/**
 * Writes `head` on a new connection (then `trickle` one byte at a time, `every` ms apart), and
 * reads until the peer closes or `wait` ms pass.
 */
async function hold(
  port: number,
  head: string,
  options: { wait: number; trickle?: string; every?: number; untilResponse?: boolean },
): Promise<Held> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(enc.encode(head));
  const headSentAt = performance.now();
  let sentAt = headSentAt;
  let open = true;
  const trickling = (async () => {
    for (const ch of options.trickle ?? "") {
      await new Promise((r) => setTimeout(r, options.every ?? 100));
      if (!open) return;
      await conn.write(enc.encode(ch)).catch(() => open = false);
      sentAt = performance.now();
    }
  })();
  let text = "";
  let firstByteAfter: number | null = null;
  let firstByteAfterHead: number | null = null;
  let closedAfter: number | null = null;
  const buf = new Uint8Array(65536);
  const deadline = performance.now() + options.wait;
  try {
    while (performance.now() < deadline) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const n = await Promise.race([
        conn.read(buf).catch(() => null),
        new Promise<"wait">((r) => timer = setTimeout(r, deadline - performance.now(), "wait")),
      ]);
      clearTimeout(timer);
      if (n === "wait") break;
      if (n === null) {
        closedAfter = performance.now() - sentAt;
        break;
      }
      firstByteAfter ??= performance.now() - sentAt;
      firstByteAfterHead ??= performance.now() - headSentAt;
      text += dec.decode(buf.subarray(0, n));
      if (options.untilResponse && complete(text)) break;
    }
  } finally {
    open = false;
    try {
      conn.close();
    } catch {
      // Closed by the peer already.
    }
    await trickling;
  }
  const status = /^HTTP\/1\.1 (\d{3})/.exec(text);
  return {
    text,
    closedAfter,
    firstByteAfter,
    firstByteAfterHead,
    status: status ? Number(status[1]) : null,
  };
}

/** Whether `text` holds a whole response with a Content-Length body. */
function complete(text: string): boolean {
  const end = text.indexOf("\r\n\r\n");
  const length = /\r\ncontent-length: (\d+)\r\n/i.exec(text.slice(0, end + 2));
  return end >= 0 && length !== null && enc.encode(text.slice(end + 4)).length >= Number(length[1]);
}

function bodyOf(text: string): string {
  return text.slice(text.indexOf("\r\n\r\n") + 4);
}

const ms = (n: number | null) => n === null ? null : Math.round(n);

Deno.test("a request body that stops arriving gets a 408 in its surface's shape after FOREMAN_BODY_TIMEOUT", async () => {
  const sim = await OllamaSim.start({ loadMs: 5, tokenMs: 1 });
  const fm = await startForeman({ ollamaUrl: sim.url, args: ["--body-timeout", "500ms"] });
  try {
    const head = (path: string) =>
      `POST ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${fm.token}\r\n` +
      `Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{"model":`;
    const stalled: Record<string, number | null> = {};
    const message =
      "request body not received in time: 9 of 200 bytes after 0.5s (FOREMAN_BODY_TIMEOUT)";
    const paths = ["/api/chat", "/api/generate", "/api/embed", "/api/show", "/jobs"];
    for (const path of [...paths, "/v1/chat/completions", "/v1/completions", "/v1/embeddings"]) {
      const r = await hold(fm.port, head(path), { wait: 10_000, untilResponse: true });
      assert.equal(r.status, 408, `${path}: ${r.text || "no answer in 10 s"}`);
      // Each surface in its own shape.
      assert.deepEqual(
        JSON.parse(bodyOf(r.text)),
        path.startsWith("/v1/")
          ? { error: { message, type: "invalid_request_error", param: null, code: null } }
          : { error: message },
      );
      assert.ok(r.firstByteAfter! >= 450, `${path} answered after ${r.firstByteAfter} ms`);
      stalled[path] = ms(r.firstByteAfter);
    }

    // The deadline is for the whole body: a byte every 100 ms does not keep it alive.
    const trickled = await hold(fm.port, head("/jobs"), {
      wait: 10_000,
      trickle: '"tiny-a"'.padEnd(60, " "),
      every: 100,
      untilResponse: true,
    });
    assert.equal(trickled.status, 408, trickled.text || "no answer in 10 s");
    assert.match(
      JSON.parse(bodyOf(trickled.text)).error,
      /^request body not received in time: \d+ of 200 bytes/,
    );

    // What Deno.serve does with the connection after the 408: kept while the client keeps it.
    const after = await hold(fm.port, head("/api/chat"), { wait: 1500 });

    // Nothing was queued, and foreman serves the next caller at once.
    const jobs = await (await fetch(fm.url + "/jobs", { headers: fm.headers() })).json();
    assert.deepEqual(jobs.jobs, []);
    const ok = await fetch(fm.url + "/api/chat", {
      method: "POST",
      headers: fm.headers(),
      body: JSON.stringify({ model: "tiny-a", stream: false, messages: [] }),
    });
    assert.equal(ok.status, 200);
    await ok.body?.cancel();
    await report("stalled request body", {
      body_timeout_ms: 500,
      answered_408_after_ms: stalled,
      trickled_408_after_ms: ms(trickled.firstByteAfterHead),
      connection_after_408: after.closedAfter === null
        ? "open while the client holds it"
        : "closed",
    });
  } finally {
    await fm.stop();
    await sim.close();
  }
});

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const NGINX_CONF = `${ROOT}deploy/nginx/nginx.conf`;

async function nginxVersion(): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("nginx", { args: ["-v"], stderr: "piped" }).output();
    return out.success ? dec.decode(out.stderr).trim() : undefined;
  } catch {
    return undefined;
  }
}

/** `body`, answered with `status` on `path`, is an error in the shape of that path's surface. */
function assertSurfaceError(
  body: { error: unknown },
  { path, status, message }: { path: string; status: number; message: RegExp },
): void {
  if (path.startsWith("/v1/")) {
    const error = body.error as { message: string };
    assert.match(error.message, message, path);
    const type = status >= 500 ? "api_error" : "invalid_request_error";
    assert.deepEqual(
      { ...error, message: "" },
      { message: "", type, param: null, code: null },
      path,
    );
  } else {
    assert.equal(typeof body.error, "string", path);
    assert.match(body.error as string, message, path);
  }
}

const nginx = await nginxVersion();
const nginxRequired = Deno.env.get("FOREMAN_NGINX_REQUIRED") === "1";
if (!nginx && !nginxRequired) {
  console.log("nginx proxy test skipped: nginx not found (apt-get install nginx)");
}

/** deploy/nginx/nginx.conf on loopback in front of `upstream`, its timeouts and caps shortened. */
function renderConf(dir: string, port: number, upstream: number): string {
  let conf = Deno.readTextFileSync(NGINX_CONF);
  const swap = (from: string, to: string) => {
    assert.equal(conf.split(from).length, 2, `deploy/nginx/nginx.conf has "${from}" once`);
    conf = conf.replace(from, to);
  };
  swap("listen 8080;", `listen 127.0.0.1:${port};`);
  swap("set $foreman foreman:8080;", `set $foreman 127.0.0.1:${upstream};`);
  // The shipped values are the documented ones; the test runs with shorter ones.
  swap("client_header_timeout 10s;", "client_header_timeout 1s;");
  swap("client_body_timeout 30s;", "client_body_timeout 1s;");
  swap("limit_conn foreman 512;", "limit_conn foreman 2;");
  swap("limit_conn watchers 1000;", "limit_conn watchers 4;");
  swap(
    "http {",
    `http {\n    client_body_temp_path ${dir}/body;\n    proxy_temp_path ${dir}/proxy;`,
  );
  return conf;
}

Deno.test({
  name:
    "nginx from deploy/ in front of foreman drops slow heads and stalled bodies, caps requests and watchers apart, and still streams",
  ignore: !nginx && !nginxRequired,
}, async (t) => {
  assert.ok(nginx, "FOREMAN_NGINX_REQUIRED=1 but nginx is not installed");
  const sim = await OllamaSim.start({ loadMs: 5, tokenMs: 40 });
  const fm = await startForeman({ ollamaUrl: sim.url });
  const dir = await Deno.makeTempDir({ prefix: "foreman-nginx-" });
  const port = freePort();
  Deno.writeTextFileSync(`${dir}/nginx.conf`, renderConf(dir, port, fm.port));
  const proxy = new Deno.Command("nginx", {
    args: [
      "-p",
      dir,
      "-c",
      `${dir}/nginx.conf`,
      "-e",
      "stderr",
      "-g",
      `daemon off; pid ${dir}/nginx.pid;`,
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let log = "";
  const pumping = (async () => {
    for await (const chunk of proxy.stderr.pipeThrough(new TextDecoderStream())) log += chunk;
  })();
  const url = `http://127.0.0.1:${port}`;
  const figures: Record<string, unknown> = { nginx };
  try {
    await waitFor(
      async () => (await fetch(url + "/healthz").then((r) => r.json())).status === "ok",
      {
        what: `nginx on ${url}`,
      },
    );

    await t.step("/healthz and a streamed chat pass through, chunk by chunk", async () => {
      assert.deepEqual(await (await fetch(url + "/healthz")).json(), {
        status: "ok",
        degraded: false,
      });
      const detail = await (await fetch(url + "/healthz", { headers: fm.headers() })).json();
      assert.equal(detail.target.reachable, true);
      const started = performance.now();
      const res = await fetch(url + "/api/chat", {
        method: "POST",
        headers: fm.headers(),
        body: JSON.stringify({
          model: "tiny-a",
          messages: [{ role: "user", content: "hi" }],
          options: { num_predict: 10 },
        }),
      });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), "application/x-ndjson");
      let first: number | undefined;
      let lines = 0;
      for await (const chunk of res.body!.pipeThrough(new TextDecoderStream())) {
        first ??= performance.now() - started;
        lines += chunk.split("\n").filter(Boolean).length;
      }
      const total = performance.now() - started;
      assert.equal(lines, 11);
      // 10 chunks 40 ms apart: a buffering proxy would hold the first until the last.
      assert.ok(first! < total - 200, `first chunk after ${first} ms of ${total} ms`);
      figures.stream_first_chunk_ms = ms(first!);
      figures.stream_total_ms = ms(total);
    });

    await t.step("a slow request head is dropped after client_header_timeout", async () => {
      const partial = "GET /api/tags HTTP/1.1\r\nHost: x\r\n";
      const [viaProxy, direct] = await Promise.all([
        hold(port, partial, { wait: 8000 }),
        hold(fm.port, partial, { wait: 3000 }),
      ]);
      assert.ok(viaProxy.closedAfter !== null, "nginx kept a slow head for 8 s");
      assert.ok(viaProxy.closedAfter >= 900, `closed after ${viaProxy.closedAfter} ms`);
      assert.equal(viaProxy.text, "", "dropped without an answer");
      figures.slow_head_closed_by_nginx_after_ms = ms(viaProxy.closedAfter);
      // Deno.serve has no header timeout: the limit this proxy is there for.
      figures.slow_head_direct_to_foreman = direct.closedAfter === null
        ? "open after 3 s"
        : `closed after ${ms(direct.closedAfter)} ms`;
    });

    await t.step(
      "a body that stops arriving is dropped by nginx and never reaches foreman",
      async () => {
        const requests = async () =>
          (await (await fetch(fm.url + "/metrics", { headers: fm.headers() })).text())
            .split("\n").filter((l) => l.startsWith("foreman_http_requests_total"))
            .reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
        const before = await requests();
        const r = await hold(
          port,
          `POST /jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${fm.token}\r\n` +
            `Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{"model":`,
          { wait: 8000 },
        );
        assert.ok(r.closedAfter !== null, "nginx kept a stalled body for 8 s");
        assert.ok(r.closedAfter >= 900, `closed after ${r.closedAfter} ms`);
        assert.equal(r.text, "", "dropped without an answer");
        // Only this step's own /metrics reads reached foreman.
        assert.equal(await requests(), before + 1);
        figures.stalled_body_closed_by_nginx_after_ms = ms(r.closedAfter);
      },
    );

    await t.step("requests past limit_conn get 503 in the shape of their surface", async () => {
      sim.stallNext(2);
      const leave = new AbortController();
      const held = [0, 1].map(() =>
        fetch(url + "/api/chat", {
          method: "POST",
          headers: fm.headers(),
          body: JSON.stringify({ model: "tiny-a", messages: [] }),
          signal: leave.signal,
        }).then((r) => r.body?.cancel()).catch(() => {})
      );
      try {
        await waitFor(async () => {
          const h = await (await fetch(fm.url + "/healthz", { headers: fm.headers() })).json();
          return h.queue.running + h.queue.queued === 2;
        }, { what: "two callers in foreman" });
        const message = /^server busy, please try again: .*requests in flight \(limit_conn\)$/;
        for (const path of ["/healthz", "/v1/models"]) {
          const refused = await fetch(url + path, { headers: fm.headers() });
          assert.equal(refused.status, 503, path);
          assert.equal(refused.headers.get("retry-after"), "5");
          assertSurfaceError(await refused.json(), { path, status: 503, message });
        }
      } finally {
        leave.abort();
        await Promise.all(held);
      }
      await waitFor(async () => (await fetch(url + "/healthz")).status === 200, {
        what: "the proxy to take requests again",
      });
    });

    await t.step(
      "watchers past the request cap do not lock out a chat caller, and have a cap of their own",
      async () => {
        // A job that stays running, so its watchers stay open.
        sim.stallNext(1);
        const submitted = await fetch(url + "/jobs", {
          method: "POST",
          headers: fm.headers(),
          body: JSON.stringify({ model: "tiny-a", messages: [] }),
        });
        assert.equal(submitted.status, 202);
        const { job_id: id } = await submitted.json();
        const health = async () =>
          (await (await fetch(fm.url + "/healthz", { headers: fm.headers() })).json()).queue;
        await waitFor(async () => (await health()).running === 1, { what: "the job to run" });
        const leave = new AbortController();
        const watch = (path: string, headers: Record<string, string> = {}) =>
          fetch(url + path, { headers: { ...fm.headers(), ...headers }, signal: leave.signal });
        try {
          // Two event streams and two long polls: twice the request cap (2), within their own (4).
          const streams = await Promise.all([0, 1].map(() => watch(`/jobs/${id}/events`)));
          const readers = streams.map((res) => {
            assert.equal(res.status, 200);
            return res.body!.pipeThrough(new TextDecoderStream()).getReader();
          });
          for (const reader of readers) {
            // The stream starts with the job's current state.
            assert.match((await reader.read()).value!, /^id: .*\nevent: (loading|working)\n/);
          }
          const polls = [
            watch(`/jobs/${id}?wait=60s`),
            watch(`/jobs/${id}`, { prefer: "wait=60" }),
          ];
          await waitFor(async () => await watchers(fm) === 4, {
            what: "four watchers in foreman",
          });

          // A fifth watcher is past the watchers' cap: nginx refuses it, naming that cap.
          const fifth = await fetch(`${url}/jobs/${id}/events`, { headers: fm.headers() });
          assert.equal(fifth.status, 503);
          assert.equal(fifth.headers.get("retry-after"), "5");
          assert.match((await fifth.json()).error, /limit of job watchers .*\(limit_conn\)$/);

          // A sync chat caller gets through and waits in foreman's queue behind the running job.
          const chat = fetch(url + "/api/chat", {
            method: "POST",
            headers: fm.headers(),
            body: JSON.stringify({ model: "tiny-a", stream: false, messages: [] }),
          });
          await waitFor(async () => (await health()).queued === 1, { what: "the chat queued" });
          // The job ends: every watcher hears it and leaves; the chat runs.
          const cancelled = await fetch(`${fm.url}/jobs/${id}`, {
            method: "DELETE",
            headers: fm.headers(),
          });
          assert.equal(cancelled.status, 200);
          await cancelled.body?.cancel();
          const answer = await chat;
          assert.equal(answer.status, 200);
          assert.equal((await answer.json()).done, true);
          for (const poll of polls) {
            const res = await poll;
            assert.equal(res.status, 200);
            assert.equal((await res.json()).state, "cancelled");
          }
          for (const reader of readers) {
            let rest = "";
            for (let r = await reader.read(); !r.done; r = await reader.read()) rest += r.value;
            assert.match(rest, /event: cancelled\n/);
          }
          figures.watchers_beside_request_cap = "4 open with a request cap of 2; the 5th 503";
        } finally {
          leave.abort();
        }
      },
    );

    await t.step("what nginx answers itself is in the shape of the path's surface", async () => {
      const tooLarge = `Content-Length: ${17 * 1024 * 1024}\r\n\r\n`;
      const answers: [string, number, RegExp][] = [
        ["GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, /^bad request/],
        ["GET /api/tags HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, /^bad request/],
        ["GET /v1/models HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, /^bad request/],
        [`POST /jobs HTTP/1.1\r\nHost: x\r\n${tooLarge}`, 413, /client_max_body_size/],
        [`POST /api/chat HTTP/1.1\r\nHost: x\r\n${tooLarge}`, 413, /client_max_body_size/],
        [
          `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${tooLarge}`,
          413,
          /client_max_body_size/,
        ],
      ];
      for (const [request, status, message] of answers) {
        const r = await hold(port, request, { wait: 5000, untilResponse: true });
        assert.equal(r.status, status, r.text);
        const path = request.split(" ")[1]!;
        assertSurfaceError(JSON.parse(bodyOf(r.text)), { path, status, message });
      }
      await fm.stop();
      for (const path of ["/api/tags", "/v1/models"]) {
        const down = await fetch(url + path, { headers: fm.headers() });
        assert.equal(down.status, 502);
        const message = /^foreman is not reachable behind the proxy$/;
        assertSurfaceError(await down.json(), { path, status: 502, message });
      }
    });
    await report("slow and idle clients behind nginx", figures);
  } finally {
    try {
      proxy.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    const status = await proxy.status;
    await pumping;
    await fm.stop();
    await sim.close();
    await Deno.remove(dir, { recursive: true });
    assert.ok(status.signal === "SIGTERM" || status.success, `nginx ended badly:\n${log}`);
  }
});
