// Disk-trouble suite: a database directory foreman cannot create or write stops it at start with
// one clear line; a disk that fills up while foreman runs turns new work away with 503 and loses
// nothing already accepted. The full-disk case needs a size-limited filesystem: a tmpfs mounted
// for the test (root with CAP_SYS_ADMIN); where mounting is refused the test is skipped.

import assert from "node:assert/strict";
import { daemonArgs } from "../../src/launcher.ts";
import { startForeman, waitFor } from "../../harness/foreman.ts";
import { OllamaSim } from "../../sim/mod.ts";
import { alive, call, cleanup, Hook, openDb, report, stopWithin } from "./support.ts";

async function run(cmd: string, args: string[]): Promise<boolean> {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).output();
    return out.success;
  } catch {
    return false;
  }
}

/** Mounts a tmpfs of `size` at `dir`; false when this machine does not allow it. */
async function mountTmpfs(dir: string, size: string, readOnly = false): Promise<boolean> {
  const opts = `size=${size}${readOnly ? ",ro" : ""}`;
  return await run("mount", ["-t", "tmpfs", "-o", opts, "tmpfs", dir]);
}

const CAN_MOUNT = await (async () => {
  const dir = await Deno.makeTempDir({ prefix: "foreman-mount-probe-" });
  const ok = await mountTmpfs(dir, "64k");
  if (ok) await run("umount", [dir]);
  await Deno.remove(dir);
  return ok;
})();

/** Runs the daemon the way `deno task start` does and returns its exit code and stderr. */
async function startFails(db: string): Promise<{ code: number; stderr: string }> {
  const dir = await Deno.makeTempDir({ prefix: "foreman-disk-" });
  await Deno.writeTextFile(`${dir}/foreman.toml`, "");
  const flags = [
    "serve",
    "--addr",
    "127.0.0.1:0",
    "--db",
    db,
    "--ollama-url",
    "http://127.0.0.1:9",
    "--config",
    `${dir}/foreman.toml`,
    "--token",
    "disk-test",
  ];
  const out = await new Deno.Command(Deno.execPath(), {
    args: daemonArgs(flags, () => undefined),
    cwd: dir,
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "", NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  await Deno.remove(dir, { recursive: true });
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

function assertOneLine(stderr: string, db: string) {
  const lines = stderr.trim().split("\n");
  const human = lines.filter((l) => l.startsWith("foreman: "));
  assert.equal(human.length, 1, `one line for people:\n${stderr}`);
  assert.ok(human[0]!.includes(db), `it names the path: ${human[0]}`);
  assert.match(human[0]!, /FOREMAN_DB/);
  assert.ok(!/^\s+at /m.test(stderr), `no stack trace:\n${stderr}`);
  for (const l of lines.filter((l) => !l.startsWith("foreman: "))) JSON.parse(l);
}

Deno.test("a database directory that cannot be created stops foreman at start with one line naming it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "foreman-disk-" });
  try {
    // Tests run as root, so permissions bits stop nothing: a file where a directory must be does.
    await Deno.writeTextFile(`${dir}/blocker`, "");
    const db = `${dir}/blocker/data/foreman.db`;
    const { code, stderr } = await startFails(db);
    assert.notEqual(code, 0);
    assertOneLine(stderr, db);
    await report("disk-start", { case: "file where the directory should be", exit: code });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "a read-only database directory stops foreman at start with one line naming it",
  ignore: !CAN_MOUNT,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "foreman-disk-" });
    assert.ok(await mountTmpfs(dir, "1m", true));
    try {
      for (const db of [`${dir}/foreman.db`, `${dir}/data/foreman.db`]) {
        const { code, stderr } = await startFails(db);
        assert.notEqual(code, 0);
        assertOneLine(stderr, db);
      }
    } finally {
      await cleanup(() => run("umount", [dir]), () => Deno.remove(dir, { recursive: true }));
    }
  },
});

Deno.test({
  name: "a disk that fills up turns new work away with 503 and loses nothing already accepted",
  ignore: !CAN_MOUNT,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "foreman-disk-" });
    assert.ok(await mountTmpfs(dir, "8m"));
    // A slow model keeps accepted jobs queued while the disk fills.
    const sim = await OllamaSim.start({ loadMs: 5, tokenMs: 20 });
    const hook = await Hook.start();
    const fm = await startForeman({
      ollamaUrl: sim.url,
      dir,
      args: [
        "--poll-interval",
        "500ms",
        "--retry-base",
        "50ms",
        "--webhook-hosts",
        hook.host,
        "--webhook-retry-base",
        "50ms",
      ],
    });
    try {
      const body = (n: number) => ({
        model: "tiny-a",
        messages: [{ role: "user", content: `job ${n} ${"x".repeat(4000)}` }],
        options: { num_predict: 10 },
        // Half of them report to a receiver, so the dispatcher's writes meet the full disk too.
        ...(n % 2 ? { state_webhook_url: `${hook.url}/events` } : {}),
      });
      // The receiver is away, so deliveries keep failing and their outcome must be written.
      await hook.down();
      const accepted: string[] = [];
      for (let n = 0; n < 12; n++) {
        const r = await call(fm, "POST", "/jobs", body(n));
        assert.equal(r.status, 202);
        accepted.push(String(r.json.job_id));
      }
      // A sync caller waits behind them; it will leave while the disk is full.
      const leaving = new AbortController();
      const waiting = fetch(fm.url + "/api/chat", {
        method: "POST",
        headers: fm.headers(),
        body: JSON.stringify({ ...body(500), stream: false }),
        signal: leaving.signal,
      }).catch(() => "left");
      await waitFor(async () =>
        (await call(fm, "GET", "/jobs?state=queued&limit=500")).json.jobs
          .some((j: { kind: string }) => j.kind === "sync")
      );
      // Fill the filesystem to the last byte.
      const filler = await Deno.open(`${dir}/filler`, { create: true, write: true });
      const chunk = new Uint8Array(64 * 1024);
      try {
        while (true) await filler.write(chunk);
      } catch (err) {
        assert.match(String(err), /No space left/);
      } finally {
        filler.close();
      }

      // New work: 503 in Ollama's shape, promptly, never 500; reads keep working.
      const statuses: number[] = [];
      let slowest = 0;
      for (let n = 100; n < 120; n++) {
        const t0 = performance.now();
        const r = await call(fm, "POST", "/jobs", body(n));
        slowest = Math.max(slowest, performance.now() - t0);
        statuses.push(r.status);
        if (r.status === 202) accepted.push(String(r.json.job_id));
        else assert.equal(typeof r.json.error, "string");
      }
      const sync = await call(fm, "POST", "/api/chat", { ...body(999), stream: false });
      assert.ok(!statuses.some((s) => s >= 500 && s !== 503), `statuses ${statuses}`);
      assert.ok(statuses.includes(503), `a full disk answers 503: ${statuses}`);
      assert.ok([200, 503].includes(sync.status), `sync chat on a full disk: ${sync.status}`);
      // Promptly: a refusal that waited for space would wait until this test frees it, below.
      assert.ok(slowest < 5000, `the slowest refusal took ${slowest} ms`);
      assert.equal((await fetch(fm.url + "/healthz")).status, 200);
      assert.equal((await call(fm, "GET", `/jobs/${accepted[0]}`)).status, 200);
      leaving.abort();
      assert.equal(await waiting, "left");

      // The target still answers polls: an inventory that cannot be saved is no outage.
      await waitFor(() => fm.output().includes("cannot save the inventory"));
      const health = await (await fetch(fm.url + "/healthz", { headers: fm.headers() })).json();
      assert.equal(health.degraded, false);
      assert.equal(health.target.reachable, true);

      // The worker hits the full disk too; foreman must stay up through it.
      await waitFor(() => fm.output().includes("worker cannot write the database"), {
        what: "the worker to meet the full disk",
      });
      const stranded = /"msg":"worker cannot write the database, retrying","job_id":"(\w+)"/
        .exec(fm.output())?.[1];
      assert.ok(alive(fm.pid), "foreman is still running");

      // Space comes back: every accepted job finishes, new work is accepted again.
      await waitFor(() => fm.output().includes("cannot record a webhook delivery"), {
        what: "the dispatcher to meet the full disk",
      });
      assert.ok(alive(fm.pid), "foreman is still running");
      await Deno.remove(`${dir}/filler`);
      await hook.up();
      await waitFor(async () => {
        const states = await Promise.all(
          accepted.map(async (id) => (await call(fm, "GET", `/jobs/${id}`)).json.state),
        );
        return states.every((s) => s === "done");
      }, { timeout: 60_000, what: `${accepted.length} accepted jobs to finish` });
      // Every webhook job's done event arrives once the disk has room again.
      const hooked = (await Promise.all(accepted.map((id) => call(fm, "GET", `/jobs/${id}`))))
        .map((r) => r.json).filter((j) => j.webhook !== null);
      await waitFor(
        () =>
          hooked.every((j) =>
            hook.ok().some((d) => d.event.job_id === j.job_id && d.event.state === "done")
          ),
        { timeout: 30_000, what: "every done event to reach the receiver" },
      );
      assert.equal((await call(fm, "POST", "/jobs", body(1000))).status, 202);
      assert.ok(alive(fm.pid));
      await stopWithin(fm);
      const db = openDb(fm.dbPath);
      try {
        assert.equal(db.prepare("PRAGMA integrity_check").get()!.integrity_check, "ok");
        const left = db.prepare(
          "SELECT count(*) AS n FROM jobs WHERE state IN ('loading', 'working')",
        ).get()!.n;
        assert.equal(Number(left), 0);
      } finally {
        db.close();
      }
      await report("disk-full", {
        accepted_before_full: 12,
        refused_503: statuses.filter((s) => s === 503).length,
        slowest_refusal_ms: Math.round(slowest),
        all_accepted_done: accepted.length,
        job_whose_write_failed: stranded ?? null,
      });
    } finally {
      await cleanup(
        () => fm.kill(),
        () => hook.close(),
        () => sim.close(),
        () => run("umount", [dir]),
        () => Deno.remove(dir, { recursive: true }),
      );
    }
  },
});
