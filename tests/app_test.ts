// startDaemon in a process of its own, on a real port and a real SQLite file in front of the
// simulator: what its build order decides (the public URL when the OS picks the port), and that a
// stopped daemon leaves nothing behind that keeps its process alive.

import assert from "node:assert/strict";
import { OllamaSim } from "../sim/mod.ts";

const APP = new URL("../src/app.ts", import.meta.url).href;
const CONFIG = new URL("../src/config.ts", import.meta.url).href;
const LOG = new URL("../src/log.ts", import.meta.url).href;
const DENO_JSON = new URL("../deno.json", import.meta.url).pathname;

/**
 * A script that starts a daemon on port 0, runs one async job, prints the job and stops the
 * daemon without exiting, then reports "lingering" if anything still holds the process a second
 * later (an unref'd timer runs only while something else keeps the event loop going).
 */
const SCRIPT = `
import { startDaemon } from "${APP}";
import { loadConfig } from "${CONFIG}";
import { silentLogger } from "${LOG}";
const [simUrl, db] = Deno.args;
const config = loadConfig({
  env: () => undefined,
  readFile: (path) => { throw new Deno.errors.NotFound(path); },
  flags: { addr: "127.0.0.1:0", db, "ollama-url": simUrl, token: "t0ken-t0ken" },
});
const daemon = await startDaemon(config, silentLogger);
const headers = { authorization: "Bearer t0ken-t0ken" };
const submitted = await fetch(daemon.url + "/jobs", {
  method: "POST",
  headers,
  body: JSON.stringify({ model: "tiny-a", messages: [{ role: "user", content: "x" }] }),
});
const { job_id } = await submitted.json();
let job;
for (let i = 0; i < 600 && job?.state !== "done"; i++) {
  await new Promise((r) => setTimeout(r, 25));
  job = await (await fetch(daemon.url + "/jobs/" + job_id, { headers })).json();
}
console.log(JSON.stringify({ port: daemon.addr.port, job }));
await daemon.stop();
await daemon.finished;
Deno.unrefTimer(setTimeout(() => console.log("lingering"), 1000));
`;

Deno.test("a daemon on port 0 links artifacts at the port it got, and once stopped lets its process end", async () => {
  const sim = await OllamaSim.start({ loadMs: 5, tokenMs: 1 });
  const dir = await Deno.makeTempDir({ prefix: "foreman-app-" });
  try {
    const script = `${dir}/daemon.ts`;
    await Deno.writeTextFile(script, SCRIPT);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", "--config", DENO_JSON, script, sim.url, `${dir}/q.db`],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(60_000),
    }).output();
    const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const { port, job } = JSON.parse(lines[0]!);
    assert.notEqual(port, 0);
    assert.equal(job.state, "done");
    assert.equal(
      job.artifacts[0].url,
      `http://127.0.0.1:${port}/jobs/${job.job_id}/artifacts/completion`,
    );
    assert.deepEqual(lines.slice(1), [], "nothing kept the stopped daemon's process alive");
  } finally {
    await sim.close();
    await Deno.remove(dir, { recursive: true });
  }
});
