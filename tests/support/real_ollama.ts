// Runs a real `ollama serve` (built by scripts/real-ollama.sh) on a free loopback port with its own
// models directory, for the end-to-end tier. Tests own the process: they can stop it, SIGKILL it
// in the middle of a job and restart it on the same port, and import the tiny GGUF models offline.

/** Ollama's version that the tier builds; the only one whose module builds without a network. */
export const OLLAMA_VERSION = "0.11.4";

/** A running (or stopped, between `kill()` and `restart()`) real Ollama server. */
export interface RealOllama {
  /** Base URL, `http://127.0.0.1:PORT`, stable across restarts. */
  url: string;
  port: number;
  /** The models directory (OLLAMA_MODELS); it survives restarts. */
  modelsDir: string;
  /** Stops the server and its runners (SIGTERM, then SIGKILL) and removes its directories. */
  stop(): Promise<void>;
  /** SIGKILLs the server and its runners, as a crash would; `restart()` brings it back. */
  kill(): Promise<void>;
  /** Starts the server again on the same port with the same models (after `kill()` or not). */
  restart(): Promise<void>;
  /** Uploads GGUF bytes as a blob and creates a model from it, without any network. */
  importModel(name: string, bytes: Uint8Array<ArrayBuffer>): Promise<void>;
  /** The server's log so far (stdout and stderr, the last few hundred KB), for failure messages. */
  output(): string;
}

/** Options of {@linkcode startRealOllama}. */
export interface RealOllamaOptions {
  /** The binary; default: {@linkcode findOllamaBin}. */
  bin?: string;
  /** Extra environment for `ollama serve`. */
  env?: Record<string, string>;
  /** How long to wait for `GET /` to answer; default 30 s. */
  startTimeoutMs?: number;
}

/**
 * Returns the Ollama binary the tier should use: `OLLAMA_BIN`, else the cached build at
 * `${XDG_CACHE_HOME:-$HOME/.cache}/foreman/ollama-v0.11.4/ollama`; null when neither exists.
 */
export function findOllamaBin(): string | null {
  const fromEnv = Deno.env.get("OLLAMA_BIN");
  if (fromEnv) return isExecutable(fromEnv) ? fromEnv : null;
  const cacheHome = Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME") ?? ""}/.cache`;
  const cached = `${cacheHome}/foreman/ollama-v${OLLAMA_VERSION}/ollama`;
  return isExecutable(cached) ? cached : null;
}

function isExecutable(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** Starts `ollama serve` on a free 127.0.0.1 port and waits until it answers. */
export async function startRealOllama(opts: RealOllamaOptions = {}): Promise<RealOllama> {
  const bin = opts.bin ?? findOllamaBin();
  if (!bin) {
    throw new Error("Cannot start a real Ollama: no binary (run scripts/real-ollama.sh build)");
  }
  const port = freePort();
  const url = `http://127.0.0.1:${port}`;
  const home = await Deno.makeTempDir({ prefix: "foreman-ollama-" });
  const modelsDir = `${home}/models`;
  await Deno.mkdir(modelsDir);
  const env: Record<string, string> = {
    // Ollama writes its key pair under HOME; keep it out of the real home directory.
    HOME: home,
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    OLLAMA_HOST: `127.0.0.1:${port}`,
    OLLAMA_MODELS: modelsDir,
    // The two-slot residency foreman is designed for: the embedder plus one worker model.
    OLLAMA_MAX_LOADED_MODELS: "2",
    OLLAMA_NUM_PARALLEL: "1",
    OLLAMA_NOPRUNE: "1",
    ...opts.env,
  };
  const log = new LogBuffer();
  let child: Deno.ChildProcess | null = null;
  let exited: Promise<unknown> = Promise.resolve();

  const spawn = async () => {
    const cmd = new Deno.Command(bin, {
      args: ["serve"],
      env,
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    });
    const c = cmd.spawn();
    child = c;
    exited = Promise.all([log.drain(c.stdout), log.drain(c.stderr), c.status]);
    await waitReady(url, c, log, opts.startTimeoutMs ?? 30_000);
  };

  const signalAll = (signal: Deno.Signal) => {
    const c = child;
    if (!c) return;
    // Runners are children of the server and are not killed with it (no Pdeathsig on Linux),
    // so signal them too; otherwise a crash test would leave orphaned runners behind.
    for (const pid of descendants(c.pid)) {
      try {
        Deno.kill(pid, signal);
      } catch { /* already gone */ }
    }
    try {
      c.kill(signal);
    } catch { /* already gone */ }
  };

  const terminate = async (signal: Deno.Signal) => {
    const c = child;
    if (!c) return;
    const runners = descendants(c.pid);
    signalAll(signal);
    const timer = setTimeout(() => signalAll("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
    await waitGone(runners);
    child = null;
  };

  await spawn();
  return {
    url,
    port,
    modelsDir,
    async stop() {
      await terminate("SIGTERM");
      await Deno.remove(home, { recursive: true }).catch(() => {});
    },
    async kill() {
      await terminate("SIGKILL");
    },
    async restart() {
      await terminate("SIGTERM");
      log.mark("--- restart ---");
      await spawn();
    },
    async importModel(name, bytes) {
      await importModel(url, name, bytes);
    },
    output: () => log.text(),
  };
}

/** Uploads `bytes` to `POST /api/blobs/sha256:<hex>` and creates `name` from that blob. */
export async function importModel(
  url: string,
  name: string,
  bytes: Uint8Array<ArrayBuffer>,
): Promise<void> {
  const digest = `sha256:${await sha256Hex(bytes)}`;
  const blob = await fetch(`${url}/api/blobs/${digest}`, { method: "POST", body: bytes });
  const blobText = await blob.text();
  if (blob.status !== 201 && blob.status !== 200) {
    throw new Error(`Cannot upload blob for ${name}: ${blob.status} ${blobText}`);
  }
  const res = await fetch(`${url}/api/create`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: name,
      files: { [`${name}.gguf`]: digest },
      // One thread, as a model parameter so that every request (foreman's own loads included)
      // gets the same runner. With ggml's default of one thread per core, these tiny models spend
      // their time in spinning thread barriers: 1000 tokens took 10 s instead of 0.5 s on two
      // cores, and 80 s instead of 1.2 s when another process kept both cores busy.
      parameters: { num_thread: 1 },
      stream: false,
    }),
  });
  const text = await res.text();
  if (res.status !== 200 || !text.includes("success")) {
    throw new Error(`Cannot create model ${name}: ${res.status} ${text}`);
  }
}

async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function waitReady(url: string, child: Deno.ChildProcess, log: LogBuffer, timeoutMs: number) {
  let exitCode: number | null = null;
  child.status.then((s) => exitCode = s.code);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exitCode !== null) {
      throw new Error(`ollama serve exited with code ${exitCode}:\n${log.text().slice(-4000)}`);
    }
    try {
      const res = await fetch(`${url}/`, { signal: AbortSignal.timeout(1_000) });
      await res.body?.cancel();
      if (res.ok) return;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`ollama serve did not answer on ${url} within ${timeoutMs} ms`);
}

/** Process ids whose parent chain leads to `root` (Linux /proc). */
function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  try {
    for (const entry of Deno.readDirSync("/proc")) {
      const pid = Number(entry.name);
      if (!Number.isInteger(pid)) continue;
      try {
        const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
        // Field 4 (ppid) follows the parenthesised command name, which may contain spaces.
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        parent.set(pid, ppid);
      } catch { /* exited meanwhile */ }
    }
  } catch {
    return [];
  }
  const out: number[] = [];
  const wanted = new Set([root]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, ppid] of parent) {
      if (wanted.has(ppid) && !wanted.has(pid)) {
        wanted.add(pid);
        out.push(pid);
        grew = true;
      }
    }
  }
  return out;
}

async function waitGone(pids: number[]) {
  const deadline = Date.now() + 5_000;
  for (const pid of pids) {
    while (Date.now() < deadline) {
      try {
        const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
        if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) break; // zombie: reaped later
      } catch {
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** Keeps the tail of a process's output so a failing test can show what Ollama said. */
class LogBuffer {
  #chunks: string[] = [];
  #size = 0;
  static readonly MAX = 512 * 1024;

  async drain(stream: ReadableStream<Uint8Array>) {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) this.#push(chunk);
  }

  mark(line: string) {
    this.#push(`${line}\n`);
  }

  text(): string {
    return this.#chunks.join("");
  }

  #push(s: string) {
    this.#chunks.push(s);
    this.#size += s.length;
    while (this.#size > LogBuffer.MAX && this.#chunks.length > 1) {
      this.#size -= this.#chunks.shift()!.length;
    }
  }
}

/**
 * The binary when the e2e tier is switched on (FOREMAN_E2E=1, set by scripts/e2e.ts) and a binary
 * exists, else null. The unit run (`deno test tests/`) also walks tests/e2e/; this keeps it fast.
 */
export function e2eOllamaBin(): string | null {
  return Deno.env.get("FOREMAN_E2E") === "1" ? findOllamaBin() : null;
}
