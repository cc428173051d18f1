// The permission sandbox is real: `deno task start` runs the daemon under exactly the flags
// permissionFlags computes (read back from the live process), a probe under those same flags is
// refused by Deno itself outside the grants, and webhook URLs off the allowlist are refused at
// submit time before any connection.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { daemonArgs, DENO_JSON, MAIN } from "../src/launcher.ts";
import { freePort, waitFor } from "../harness/foreman.ts";
import { OllamaSim } from "../sim/mod.ts";
import type { ProbeOp, ProbeResult } from "./support/probe.ts";
import { startReceiver } from "../harness/receiver.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const PROBE = fileURLToPath(new URL("./support/probe.ts", import.meta.url));

function baseEnv(): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const name of ["PATH", "HOME", "DENO_DIR", "XDG_CACHE_HOME", "TMPDIR"]) {
    const v = Deno.env.get(name);
    if (v !== undefined) env[name] = v;
  }
  return env;
}

/** Every process below `pid`, found through each process's parent in /proc/<n>/stat. */
function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      // The command name is in parentheses and may contain spaces: fields start after ")".
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      parent.set(Number(entry.name), Number(fields[1]));
    } catch { /* the process ended meanwhile */ }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [child, ppid] of parent) {
      if (ppid === p) {
        out.push(child);
        walk(child);
      }
    }
  };
  walk(pid);
  return out;
}

function argv(pid: number): string[] {
  return Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").slice(0, -1);
}

/** A TCP listener that counts the connections it is offered. */
function countingListener() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let accepted = 0;
  const loop = (async () => {
    try {
      for await (const conn of listener) {
        accepted++;
        conn.close();
      }
    } catch { /* closed */ }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    accepted: () => accepted,
    close: async () => {
      listener.close();
      await loop;
    },
  };
}

Deno.test("deno task start runs the daemon under exactly the computed flags, and Deno enforces them", async (t) => {
  const sim = await OllamaSim.start({ loadMs: 10, tokenMs: 2 });
  const hook = await startReceiver();
  const outside = countingListener();
  const dir = await Deno.makeTempDir({ prefix: "foreman-sandbox-" });
  await Deno.writeTextFile(`${dir}/foreman.toml`, "[queue]\nmax_attempts = 2\n");
  const port = await freePort();
  const token = crypto.randomUUID();
  const flags = [
    "--addr",
    `127.0.0.1:${port}`,
    "--db",
    `${dir}/data/f.db`,
    "--ollama-url",
    sim.url,
    "--config",
    `${dir}/foreman.toml`,
    "--webhook-hosts",
    `127.0.0.1:${hook.port}`,
    "--log-level",
    "debug",
  ];
  const task = new Deno.Command(Deno.execPath(), {
    args: ["task", "start", ...flags],
    cwd: ROOT,
    clearEnv: true,
    env: { ...baseEnv(), FOREMAN_TOKEN: token },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
  const pumps = [task.stdout, task.stderr].map(async (s) => {
    for await (const chunk of s.pipeThrough(new TextDecoderStream())) output += chunk;
  });
  let daemonPid: number | undefined;
  const url = `http://127.0.0.1:${port}`;
  const auth = { authorization: `Bearer ${token}` };
  try {
    await waitFor(() => output.includes('"msg":"listening"'), {
      timeout: 30_000,
      what: `the daemon to listen (output so far: ${output})`,
    });
    const daemon = descendants(task.pid).map((pid) => ({ pid, argv: argv(pid) }))
      .find((p) => p.argv.includes(MAIN));
    assert.ok(daemon, "a deno process running main.ts below the task");
    daemonPid = daemon.pid;
    const expected = daemonArgs(
      ["serve", ...flags],
      (name) => name === "FOREMAN_TOKEN" ? token : undefined,
    );

    await t.step("its argv is exactly daemonArgs: scoped grants, nothing broad", () => {
      assert.deepEqual(daemon.argv.slice(1), expected);
      const grants = daemon.argv.filter((a) => /^(-A|--allow-|--deny-|-[RWNESI]$)/.test(a));
      assert.deepEqual(grants, [
        `--allow-net=127.0.0.1:${port},127.0.0.1:${sim.port},127.0.0.1:${hook.port}`,
        `--allow-read=${dir}/data,${dir}/foreman.toml`,
        `--allow-write=${dir}/data`,
        "--allow-env=FOREMAN_*",
      ]);
      assert.ok(!output.includes("broader permissions"), output);
    });

    const flagsOf = daemon.argv.slice(1, daemon.argv.indexOf(MAIN));
    const probe = async (ops: ProbeOp[]): Promise<ProbeResult[]> => {
      const out = await new Deno.Command(daemon.argv[0]!, {
        args: [...flagsOf, PROBE, JSON.stringify(ops)],
        cwd: dir,
        clearEnv: true,
        env: { ...baseEnv(), FOREMAN_TOKEN: token },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      return JSON.parse(text);
    };
    const outcome = (r: ProbeResult) => r.ok ? "ok" : r.error;

    await t.step("under those flags Deno refuses every connection off the allowlist", async () => {
      const results = await probe([
        { op: "connect", host: "127.0.0.1", port: sim.port },
        { op: "fetch", url: `${sim.url}/api/version` },
        { op: "connect", host: "127.0.0.1", port: outside.port },
        { op: "fetch", url: `http://127.0.0.1:${outside.port}/` },
        { op: "connect", host: "127.0.0.2", port: sim.port },
        { op: "connect", host: "localhost", port: sim.port },
        { op: "listen", host: "127.0.0.1", port: await freePort() },
      ]);
      assert.deepEqual(results.map(outcome), [
        "ok",
        "ok",
        "NotCapable",
        "NotCapable",
        "NotCapable",
        "NotCapable",
        "NotCapable",
      ], JSON.stringify(results));
      assert.match(
        results[2]!.message!,
        new RegExp(`net access to "127\\.0\\.0\\.1:${outside.port}"`),
      );
      assert.equal(outside.accepted(), 0);
    });

    await t.step(
      "under those flags files outside the data directory are out of reach",
      async () => {
        const results = await probe([
          { op: "write", path: `${dir}/data/probe.txt` },
          { op: "read", path: `${dir}/data/probe.txt` },
          { op: "read", path: `${dir}/foreman.toml` },
          { op: "read", path: "/etc/hostname" },
          { op: "read", path: `${ROOT}/deno.json` },
          { op: "write", path: `${dir}/outside.txt` },
          { op: "write", path: `${dir}/foreman.toml` },
        ]);
        assert.deepEqual(results.map(outcome), [
          "ok",
          "ok",
          "ok",
          "NotCapable",
          "NotCapable",
          "NotCapable",
          "NotCapable",
        ], JSON.stringify(results));
      },
    );

    await t.step(
      "under those flags no process, other variable or system query is allowed",
      async () => {
        const results = await probe([
          { op: "run", cmd: "true" },
          { op: "run", cmd: Deno.execPath() },
          { op: "env", name: "FOREMAN_TOKEN" },
          { op: "env", name: "HOME" },
          { op: "sys" },
        ]);
        assert.deepEqual(
          results.map(outcome),
          ["NotCapable", "NotCapable", "ok", "NotCapable", "NotCapable"],
          JSON.stringify(results),
        );
      },
    );

    await t.step("the launcher gives up every permission once the daemon runs", async () => {
      const launcher = descendants(task.pid).map((pid) => ({ pid, argv: argv(pid) }))
        .find((p) => p.argv.includes("src/launcher.ts"));
      assert.ok(launcher, "the launcher between the task and the daemon");
      assert.ok(descendants(launcher.pid).includes(daemonPid!), "the daemon is its child");
      // What the task grants it: broad, because it cannot name the files or the binary ahead.
      const taskFlags = launcher.argv.slice(1, launcher.argv.indexOf("src/launcher.ts"));
      assert.deepEqual(taskFlags, [
        "run",
        "--no-prompt",
        "--allow-read",
        "--allow-env=FOREMAN_*",
        "--allow-run",
      ]);
      // What the live launcher reports holding, from Deno's own permission state after the drop.
      const dropped = output.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
        .find((l) => l.msg === "launcher dropped its permissions");
      assert.deepEqual(dropped && { level: dropped.level, held: dropped.held }, {
        level: "debug",
        held: [],
      }, output);
      // The same flags and the same drop: Deno refuses what the flags alone allow.
      const ops: ProbeOp[] = [
        { op: "run", cmd: "true" },
        { op: "run", cmd: Deno.execPath() },
        { op: "read", path: `${dir}/foreman.toml` },
        { op: "read", path: "/etc/hostname" },
        { op: "env", name: "FOREMAN_TOKEN" },
      ];
      const run = async (list: ProbeOp[]) => {
        const out = await new Deno.Command(Deno.execPath(), {
          args: [...taskFlags, PROBE, JSON.stringify(list)],
          cwd: ROOT,
          clearEnv: true,
          env: { ...baseEnv(), FOREMAN_TOKEN: token },
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).output();
        assert.ok(out.success, new TextDecoder().decode(out.stderr));
        return (JSON.parse(new TextDecoder().decode(out.stdout)) as ProbeResult[]).map(outcome);
      };
      // Before the drop everything but running deno itself is allowed.
      const [runTrue, , ...rest] = ops;
      assert.deepEqual(await run([runTrue!, ...rest]), ["ok", "ok", "ok", "ok"]);
      assert.deepEqual(await run([{ op: "drop" }, ...ops]), [
        "ok",
        "NotCapable",
        "NotCapable",
        "NotCapable",
        "NotCapable",
        "NotCapable",
      ]);
    });

    await t.step(
      "a webhook off the allowlist is refused at submit, before any connection",
      async () => {
        const body = (webhook: string) =>
          JSON.stringify({
            model: "tiny-a",
            messages: [{ role: "user", content: "hi" }],
            state_webhook_url: webhook,
          });
        const refused = await fetch(`${url}/jobs`, {
          method: "POST",
          headers: auth,
          body: body(`http://127.0.0.1:${outside.port}/hook`),
        });
        assert.equal(refused.status, 400);
        assert.match((await refused.json()).error, /FOREMAN_WEBHOOK_HOSTS/);
        const listed = await fetch(`${url}/jobs`, {
          method: "POST",
          headers: auth,
          body: body(`${hook.url}/hook`),
        });
        assert.equal(listed.status, 202);
        const { job_id } = await listed.json();
        // Once the listed receiver has every event, the dispatcher has run past the refused URL too.
        await waitFor(
          () => hook.delivered().some((e) => e.job_id === job_id && e.state === "done"),
          {
            what: "the listed receiver to get the done event",
          },
        );
        assert.equal(outside.accepted(), 0);
      },
    );
  } finally {
    if (daemonPid !== undefined) Deno.kill(daemonPid, "SIGTERM");
    else task.kill("SIGTERM");
    const status = await task.status;
    await Promise.all(pumps);
    await outside.close();
    await hook.close();
    await sim.close();
    await Deno.remove(dir, { recursive: true });
    if (daemonPid !== undefined) assert.equal(status.code, 0, output);
  }
});

Deno.test("the daemon names a missing permission and refuses to start", async () => {
  const dir = await Deno.makeTempDir({ prefix: "foreman-sandbox-" });
  try {
    const flags = [
      "--addr",
      "127.0.0.1:0",
      "--db",
      `${dir}/data/f.db`,
      "--config",
      `${dir}/x.toml`,
    ];
    await Deno.writeTextFile(`${dir}/x.toml`, "");
    const args = daemonArgs(["serve", ...flags], () => undefined)
      .filter((a) => !a.startsWith("--allow-write="));
    const out = await new Deno.Command(Deno.execPath(), {
      args,
      cwd: dir,
      clearEnv: true,
      env: baseEnv(),
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 2, stderr);
    assert.match(
      stderr,
      new RegExp(`foreman: missing Deno permissions: --allow-write=${dir}/data\n`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the daemon warns when it holds broader permissions than it needs", async () => {
  const dir = await Deno.makeTempDir({ prefix: "foreman-sandbox-" });
  const target = await freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--config", DENO_JSON, "-A", MAIN, "--addr", "127.0.0.1:0", "--db", "data/f.db"],
    cwd: dir,
    clearEnv: true,
    env: { ...baseEnv(), FOREMAN_OLLAMA_URL: `http://127.0.0.1:${target}` },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const pump = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) stderr += chunk;
  })();
  try {
    await waitFor(() => stderr.includes('"msg":"listening"'), { what: "the daemon to listen" });
    const warning = stderr.split("\n").map((l) => l && JSON.parse(l))
      .find((l) => l && l.msg === "running with broader permissions than this configuration needs");
    assert.ok(warning, stderr);
    assert.equal(warning.level, "warn");
    assert.ok(warning.extra.includes("--allow-run"));
    assert.match(
      warning.needed,
      new RegExp(`^--allow-net=127\\.0\\.0\\.1,127\\.0\\.0\\.1:${target} `),
    );
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await pump;
    await Deno.remove(dir, { recursive: true });
  }
});
