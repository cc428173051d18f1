// Starts a real foreman process for tests, under exactly the Deno permissions `deno task start`
// gives it (both use launcher.ts's daemonArgs), on a real port with a real SQLite file.

import { daemonArgs } from "../src/launcher.ts";

export interface ForemanOptions {
  ollamaUrl: string;
  /** Inbound token; a fresh random one by default. Pass "" for none. */
  token?: string;
  /** Extra FOREMAN_* variables. */
  env?: Record<string, string>;
  /** Extra flags. */
  args?: string[];
  /** Working directory holding data/foreman.db; a new temp dir by default. */
  dir?: string;
  port?: number;
  /**
   * Where the daemon's output goes: a pipe this process reads (the default, for tests), or the
   * file foreman.log in its directory, which benchmarks use so that the load generator does not
   * spend its cores reading log lines. `output()` reads either.
   */
  output?: "pipe" | "file";
}

export interface ForemanProcess {
  url: string;
  port: number;
  token: string;
  dir: string;
  dbPath: string;
  pid: number;
  /** The `deno` arguments the daemon was started with. */
  args: string[];
  /** Everything it printed so far (stdout and stderr, all runs). */
  output(): string;
  /** Authorization header for fetch. */
  headers(extra?: Record<string, string>): Record<string, string>;
  /** Waits until the output contains `text` (after `from` characters). */
  waitForOutput(text: string, options?: { timeout?: number; from?: number }): Promise<void>;
  /** SIGTERM and wait. */
  stop(): Promise<void>;
  /** SIGKILL and wait: a crash. */
  kill(): Promise<void>;
  /** Start again with the same directory, port and settings. */
  restart(): Promise<void>;
}

export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Polls `check` until it returns a truthy value or the deadline passes. */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  options: { timeout?: number; interval?: number; what?: string } = {},
): Promise<Exclude<T, false | null | undefined | 0 | "">> {
  const deadline = Date.now() + (options.timeout ?? 15_000);
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v) return v as Exclude<T, false | null | undefined | 0 | "">;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, options.interval ?? 25));
  }
  throw new Error(
    `timed out waiting for ${options.what ?? "a condition"}${last ? `: ${last}` : ""}`,
  );
}

export async function startForeman(options: ForemanOptions): Promise<ForemanProcess> {
  const dir = options.dir ?? await Deno.makeTempDir({ prefix: "foreman-test-" });
  const port = options.port ?? await freePort();
  const token = options.token ?? crypto.randomUUID();
  // An empty config file of its own, so the repository's foreman.toml never leaks into a test.
  const configFile = `${dir}/foreman.toml`;
  try {
    await Deno.stat(configFile);
  } catch {
    await Deno.writeTextFile(configFile, "");
  }
  const flags = [
    "serve",
    "--addr",
    `127.0.0.1:${port}`,
    "--db",
    `${dir}/data/foreman.db`,
    "--ollama-url",
    options.ollamaUrl,
    "--config",
    configFile,
    ...(options.args ?? []),
  ];
  const env: Record<string, string> = { ...options.env };
  if (token) env.FOREMAN_TOKEN = token;
  let out = "";
  let child: Deno.ChildProcess | undefined;
  let pumping: Promise<unknown> = Promise.resolve();

  const args = daemonArgs(flags, (name) => env[name]);
  const logFile = `${dir}/foreman.log`;
  const toFile = options.output === "file";
  const output = () => {
    if (!toFile) return out;
    try {
      return Deno.readTextFileSync(logFile);
    } catch {
      return "";
    }
  };
  const launch = async () => {
    const startAt = output().length;
    const quote = (x: string) => `'${x.replaceAll("'", `'\\''`)}'`;
    child = new Deno.Command(toFile ? "sh" : Deno.execPath(), {
      // exec: the shell becomes the daemon, so the pid is foreman's own.
      args: toFile
        ? ["-c", `exec ${[Deno.execPath(), ...args].map(quote).join(" ")} >>${logFile} 2>&1`]
        : args,
      cwd: dir,
      env: { ...passThroughEnv(), ...env },
      clearEnv: true,
      stdin: "null",
      stdout: toFile ? "null" : "piped",
      stderr: toFile ? "null" : "piped",
    }).spawn();
    const decoder = () => new TextDecoderStream();
    const pump = async (s: ReadableStream<Uint8Array>) => {
      for await (const chunk of s.pipeThrough(decoder())) out += chunk;
    };
    pumping = toFile ? Promise.resolve() : Promise.all([pump(child.stdout), pump(child.stderr)]);
    const exited = child.status.then((s) => s);
    let listening = false;
    await Promise.race([
      waitFor(async () => {
        const res = await fetch(`http://127.0.0.1:${port}/healthz`);
        await res.body?.cancel();
        return res.ok;
      }, { timeout: 30_000, what: "foreman to answer /healthz" }),
      exited.then((s) => {
        if (listening) return;
        throw new Error(
          `foreman exited with ${s.code} before listening:\n${output().slice(startAt)}`,
        );
      }),
    ]);
    listening = true;
  };
  const wait = async () => {
    if (!child) return;
    await child.status;
    await pumping;
    child = undefined;
  };
  await launch();

  const proc: ForemanProcess = {
    url: `http://127.0.0.1:${port}`,
    port,
    token,
    dir,
    dbPath: `${dir}/data/foreman.db`,
    get pid() {
      return child?.pid ?? -1;
    },
    args,
    output,
    headers: (extra = {}) => ({
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...extra,
    }),
    waitForOutput: async (text, o = {}) => {
      await waitFor(() => output().slice(o.from ?? 0).includes(text), {
        timeout: o.timeout,
        what: `output ${text}`,
      });
    },
    stop: async () => {
      if (!child) return;
      child.kill("SIGTERM");
      await wait();
    },
    kill: async () => {
      if (!child) return;
      child.kill("SIGKILL");
      await wait();
    },
    restart: async () => {
      await proc.stop();
      await launch();
    },
  };
  return proc;
}

/** What a child process needs from the parent environment: nothing named FOREMAN_*. */
function passThroughEnv(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of ["PATH", "HOME", "DENO_DIR", "XDG_CACHE_HOME", "TMPDIR", "NO_COLOR"]) {
    const v = Deno.env.get(name);
    if (v !== undefined) out[name] = v;
  }
  out.NO_COLOR = "1";
  return out;
}
