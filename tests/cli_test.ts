// The command line as users run it (`deno task cli <command>`), against a real foreman process and
// the Ollama simulator: submit, jobs, ps and permissions, and the one-line errors.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { loadConfig } from "../src/config.ts";
import { permissionFlags } from "../src/permissions.ts";
import { freePort, startForeman, waitFor } from "../harness/foreman.ts";
import { OllamaSim, simWords } from "../sim/mod.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `deno task cli ...` from the repository root with only the given FOREMAN_* variables. */
async function cli(args: string[], options: { env?: Record<string, string>; stdin?: string } = {}) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "cli", ...args],
    cwd: ROOT,
    clearEnv: true,
    env: { ...baseEnv(), ...options.env },
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) } as Run;
}

function baseEnv(): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const name of ["PATH", "HOME", "DENO_DIR", "XDG_CACHE_HOME", "TMPDIR"]) {
    const v = Deno.env.get(name);
    if (v !== undefined) env[name] = v;
  }
  return env;
}

function lines(text: string): string[] {
  return text.split("\n").filter((l) => l !== "");
}

/**
 * `foreman submit --wait` of `prompt` against `fm`, running: its stderr is read as it comes
 * (`stderr()`), and `end()` waits for it to exit with its stdout.
 */
function submitWait(fm: { url: string; token: string }, prompt: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "cli", "submit", "-m", "tiny-a", "-p", prompt, "--wait"],
    cwd: ROOT,
    clearEnv: true,
    env: { ...baseEnv(), FOREMAN_URL: fm.url, FOREMAN_TOKEN: fm.token },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const reading = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) stderr += chunk;
  })();
  return {
    stderr: () => stderr,
    end: async () => {
      const out = await new Response(child.stdout).text();
      const status = await child.status;
      await reading;
      return { out, code: status.code, stderr };
    },
  };
}

Deno.test("the foreman CLI drives a running foreman", async (t) => {
  const sim = await OllamaSim.start({ loadMs: 10, tokenMs: 2 });
  const fm = await startForeman({ ollamaUrl: sim.url });
  const env = { FOREMAN_URL: fm.url, FOREMAN_TOKEN: fm.token };
  try {
    await t.step("submit --wait prints the answer on stdout and each state on stderr", async () => {
      const run = await cli(["submit", "--model", "tiny-a", "--prompt", "hello", "--wait"], {
        env,
      });
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout, simWords(8) + "\n");
      const progress = lines(run.stderr);
      const id = progress[0]!.split(" ")[0];
      assert.match(id!, ULID);
      assert.ok(progress.every((l) => l.startsWith(`${id} `)), run.stderr);
      assert.match(progress[0]!, / queued \(position 1\) \(\d+\.\ds\)$|^\S+ (loading|working) /);
      assert.match(progress.at(-1)!, / done \(\d+\.\ds\)$/);
    });

    let submitted = "";
    await t.step("submit without --wait prints only the job id", async () => {
      const run = await cli(["submit", "-m", "tiny-b", "a", "prompt", "from", "arguments"], {
        env,
      });
      assert.equal(run.code, 0, run.stderr);
      submitted = run.stdout.trim();
      assert.match(submitted, ULID);
      assert.equal(run.stderr, "");
      await waitFor(async () => {
        const res = await fetch(`${fm.url}/jobs/${submitted}`, { headers: fm.headers() });
        return (await res.json()).state === "done";
      }, { what: "the submitted job to finish" });
      const job = await (await fetch(`${fm.url}/jobs/${submitted}`, { headers: fm.headers() }))
        .json();
      assert.deepEqual(job.result.message, { role: "assistant", content: simWords(8) });
    });

    await t.step("jobs lists id, state, model and age, newest first", async () => {
      const run = await cli(["jobs"], { env });
      assert.equal(run.code, 0, run.stderr);
      const [header, first] = lines(run.stdout);
      assert.match(header!, /^ID\s+STATE\s+MODEL\s+AGE$/);
      assert.match(first!, new RegExp(`^${submitted}\\s+done\\s+tiny-b\\S*\\s+\\d+[smhd]$`));
      assert.equal(lines(run.stdout).length, 3);
    });

    await t.step("jobs filters by state and limits the count", async () => {
      const one = await cli(["jobs", "--state", "done", "--limit", "1"], { env });
      assert.equal(one.code, 0, one.stderr);
      assert.equal(lines(one.stdout).length, 2);
      const none = await cli(["jobs", "--state", "queued"], { env });
      assert.equal(none.code, 0, none.stderr);
      assert.equal(none.stdout, "");
      assert.equal(none.stderr.trim(), "no jobs");
    });

    await t.step("submit takes a JSON request body from stdin", async () => {
      const body = JSON.stringify({ endpoint: "generate", model: "tiny-c", prompt: "hi" });
      const run = await cli(["submit", "--wait"], { env, stdin: body });
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout, simWords(8) + "\n");
    });

    await t.step("submit takes a plain prompt from stdin and --json prints the job", async () => {
      const run = await cli(["submit", "-m", "tiny-a", "--wait", "--json"], {
        env,
        stdin: "why is the sky blue?\n",
      });
      assert.equal(run.code, 0, run.stderr);
      const job = JSON.parse(run.stdout);
      assert.equal(job.state, "done");
      assert.equal(job.result.message.content, simWords(8));
      const asked = sim.requests.findLast((r) => r.path === "/api/chat")!.body as {
        messages: { content: string }[];
      };
      assert.equal(asked.messages.at(-1)!.content, "why is the sky blue?");
    });

    await t.step("ps shows the target, its version, the queue and resident models", async () => {
      const run = await cli(["ps"], { env });
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /^target\s+reachable, ollama 0\.11\.4, last poll \d+[smhd] ago$/m);
      assert.match(run.stdout, /^queue\s+0 queued, 0 running$/m);
      assert.match(run.stdout, /^NAME\s+SIZE\s+PROCESSOR\s+UNTIL$/m);
      assert.match(run.stdout, /^tiny-a:latest\s/m);
    });

    await t.step("a model the target lacks is one line and exit code 1", async () => {
      const run = await cli(["submit", "-m", "missing-model", "-p", "hi"], { env });
      assert.equal(run.code, 1);
      assert.equal(lines(run.stderr).length, 1, run.stderr);
      assert.match(run.stderr, /^foreman submit: POST \/jobs: 404 .*missing-model/);
    });

    await t.step("a wrong token is one line and exit code 1", async () => {
      for (const command of [["jobs"], ["ps"], ["submit", "-m", "tiny-a", "-p", "hi"]]) {
        const run = await cli(command, { env: { ...env, FOREMAN_TOKEN: "wrong" } });
        assert.equal(run.code, 1, command.join(" "));
        assert.equal(lines(run.stderr).length, 1, run.stderr);
        assert.match(run.stderr, /refused the token \(invalid bearer token\): check FOREMAN_TOKEN/);
        assert.equal(run.stdout, "");
      }
      const none = await cli(["jobs"], { env: { FOREMAN_URL: fm.url } });
      assert.equal(none.code, 1);
      assert.match(none.stderr, /refused the token .*: set FOREMAN_TOKEN\n$/);
    });

    await t.step("client commands run whatever the daemon configuration says", async () => {
      const run = await cli(["jobs", "-n", "1"], {
        env: {
          ...env,
          FOREMAN_CONFIG: "/nonexistent/foreman.toml",
          FOREMAN_ADDR: "not-an-address",
          FOREMAN_MAX_QUEUE: "-3",
        },
      });
      assert.equal(run.code, 0, run.stderr);
      assert.equal(lines(run.stdout).length, 2);
    });

    await t.step("the token may be the daemon's rotation list: the first one is sent", async () => {
      const run = await cli(["jobs", "-n", "1"], {
        env: { FOREMAN_URL: fm.url, FOREMAN_TOKEN: `${fm.token},older-token` },
      });
      assert.equal(run.code, 0, run.stderr);
    });

    await t.step("submit --wait exits 1 when the job is cancelled", async () => {
      const slow = await OllamaSim.start({ loadMs: 10, tokenMs: 300, tokens: 50 });
      const fm2 = await startForeman({ ollamaUrl: slow.url });
      try {
        const run = submitWait(fm2, "long");
        const id = await waitFor(
          () => / working /.test(run.stderr()) && run.stderr().split(" ")[0],
          {
            timeout: 20_000,
            what: "the job to start working",
          },
        );
        const res = await fetch(`${fm2.url}/jobs/${id}`, {
          method: "DELETE",
          headers: fm2.headers(),
        });
        assert.equal(res.status, 200);
        await res.body?.cancel();
        const { out, code, stderr } = await run.end();
        assert.equal(code, 1);
        assert.equal(out, "");
        assert.match(lines(stderr).at(-1)!, new RegExp(`^${id} cancelled `));
      } finally {
        await fm2.stop();
        await slow.close();
      }
    });
  } finally {
    await fm.stop();
    await sim.close();
  }
});

Deno.test("submit --wait follows the job's event stream, resuming it across a restart of foreman", async () => {
  const sim = await OllamaSim.start({ loadMs: 10, tokenMs: 250, tokens: 12 });
  const fm = await startForeman({ ollamaUrl: sim.url });
  try {
    const run = submitWait(fm, "slow");
    // Only the event stream says a job is still working: a poll sees no change to report.
    await waitFor(() => / still working \(/.test(run.stderr()), {
      timeout: 20_000,
      what: "a progress line",
    });
    await fm.restart();
    const { out, code, stderr } = await run.end();
    assert.equal(code, 0, stderr);
    assert.equal(out, simWords(12) + "\n");
    const progress = lines(stderr);
    const id = progress[0]!.split(" ")[0]!;
    assert.ok(progress.every((l) => l.startsWith(`${id} `)), stderr);
    assert.match(progress.at(-1)!, / done \(\d+\.\ds\)$/);
    assert.ok(progress.some((l) => / queued /.test(l)), "the restart requeued the job: " + stderr);
  } finally {
    await fm.stop();
    await sim.close();
  }
});

Deno.test("an unreachable foreman is one line and exit code 1", async () => {
  const port = await freePort();
  for (const command of [["jobs"], ["ps"], ["submit", "-m", "m", "-p", "hi"]]) {
    const run = await cli(command, {
      env: { FOREMAN_URL: `http://127.0.0.1:${port}`, FOREMAN_TOKEN: "t" },
    });
    assert.equal(run.code, 1);
    assert.equal(run.stdout, "");
    assert.equal(
      run.stderr,
      `foreman ${command[0]}: cannot reach foreman at http://127.0.0.1:${port} ` +
        `(connection refused); is it running? Set FOREMAN_URL to its address\n`,
    );
  }
});

Deno.test("usage mistakes are one line and exit code 2", async () => {
  const cases: [string[], RegExp][] = [
    [["submit", "--bogus"], /^foreman submit: unknown flag --bogus \(see foreman submit --help\)$/],
    [["submit", "-p", "hi"], /^foreman submit: --model is required/],
    [["submit", "-m", "m"], /^foreman submit: nothing to submit/],
    [["jobs", "extra"], /^foreman jobs: /],
    [["--max-wait", "1s", "jobs"], /^foreman: put 'jobs' first: foreman jobs \[flags\]$/],
  ];
  for (const [args, expected] of cases) {
    const run = await cli(args, { env: { FOREMAN_URL: "http://127.0.0.1:9" } });
    assert.equal(run.code, 2, args.join(" "));
    assert.equal(lines(run.stderr).length, 1, run.stderr);
    assert.match(run.stderr.trim(), expected);
  }
});

Deno.test("permissions prints exactly the flags the daemon is launched with", async () => {
  const dir = await Deno.makeTempDir({ prefix: "foreman-cli-" });
  try {
    await Deno.writeTextFile(`${dir}/foreman.toml`, `[webhooks]\nhosts = ["hooks.example:443"]\n`);
    const flags = {
      addr: "127.0.0.1:9123",
      db: `${dir}/data/f.db`,
      "ollama-url": "http://127.0.0.1:11999",
      config: `${dir}/foreman.toml`,
    };
    const args = Object.entries(flags).flatMap(([k, v]) => [`--${k}`, v]);
    const run = await cli(["permissions", ...args], {
      env: { FOREMAN_ALLOW_UNAUTHENTICATED: "1" },
    });
    assert.equal(run.code, 0, run.stderr);
    const expected = permissionFlags(
      loadConfig({
        flags,
        env: (n) => n === "FOREMAN_ALLOW_UNAUTHENTICATED" ? "1" : undefined,
      }),
      ROOT,
    );
    assert.equal(run.stdout, expected.join(" ") + "\n");
    assert.deepEqual(run.stdout.trim().split(" "), [
      "--allow-net=127.0.0.1:9123,127.0.0.1:11999,hooks.example:443",
      `--allow-read=${dir}/data,${dir}/foreman.toml`,
      `--allow-write=${dir}/data`,
      "--allow-env=FOREMAN_*",
      "--no-prompt",
      "--unstable-no-legacy-abort",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("permissions stops on an invalid configuration with one line", async () => {
  const run = await cli(["permissions", "--addr", "nowhere"]);
  assert.equal(run.code, 2);
  assert.equal(
    run.stderr,
    "foreman: Invalid FOREMAN_ADDR from --addr: 'nowhere' is not host:port (e.g. 127.0.0.1:8080)\n",
  );
});
