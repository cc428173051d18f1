// The parts a benchmark runs against: the Ollama simulator as its own process (so its work does not
// share the load generator's event loop), foreman through the test harness, and what the machine
// says about itself (load, memory of a process, hardware) for the report.

import { DatabaseSync } from "node:sqlite";
import { fileURLToPath } from "node:url";

const SIM = fileURLToPath(new URL("../sim/main.ts", import.meta.url));
const BARE_PROXY = fileURLToPath(new URL("./bare_proxy.ts", import.meta.url));
const BARE_SERIAL = fileURLToPath(new URL("./bare_serial.ts", import.meta.url));

export interface SimProcess {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/**
 * Stops `child` with `signal` and waits for it, killing it if it is still running after
 * `graceMs`.
 */
export async function stopChild(
  child: Deno.ChildProcess,
  signal: Deno.Signal = "SIGTERM",
  graceMs = 5000,
): Promise<void> {
  try {
    child.kill(signal);
  } catch { /* already gone */ }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, graceMs);
  await child.status;
  clearTimeout(timer);
}

/**
 * The flags a benchmark's foreman serves with: its own address, database and empty config file
 * under `dir`, the target, and a queue no benchmark fills.
 */
export function benchServeFlags(dir: string, port: number, target: string): string[] {
  return [
    "serve",
    "--addr",
    `127.0.0.1:${port}`,
    "--db",
    `${dir}/data/foreman.db`,
    "--ollama-url",
    target,
    "--config",
    `${dir}/foreman.toml`,
    "--max-queue",
    "1000000",
  ];
}

/** Starts the simulator (sim/main.ts) as a process and waits for its {"listening": url} line. */
export async function startSimProcess(flags: {
  loadMs: number;
  tokenMs: number;
  models: string[];
  maxLoaded?: number;
}): Promise<SimProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      SIM,
      "--port",
      "0",
      "--load-ms",
      String(flags.loadMs),
      "--token-ms",
      String(flags.tokenMs),
      "--models",
      flags.models.join(","),
      "--max-loaded",
      String(flags.maxLoaded ?? 2),
      // The load generator keeps up to 64 requests waiting at the simulator.
      "--max-queue",
      "4096",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  return await listening(child, "the simulator");
}

/** Reads a child's first stdout line, {"listening": url}, and keeps draining the rest. */
async function listening(child: Deno.ChildProcess, what: string): Promise<SimProcess> {
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const deadline = Date.now() + 30_000;
  while (!buffered.includes("\n")) {
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`${what} did not start within 30 s`);
    }
    const { value, done } = await lines.read();
    if (done) throw new Error(`${what} exited before listening`);
    buffered += value;
  }
  const url = JSON.parse(buffered.slice(0, buffered.indexOf("\n"))).listening as string;
  // Keep draining stdout so the child never blocks on a full pipe.
  const draining = (async () => {
    while (!(await lines.read()).done) { /* discard */ }
  })().catch(() => {});
  return {
    url,
    pid: child.pid,
    stop: async () => {
      await stopChild(child);
      await draining;
    },
  };
}

/** Starts `bare_proxy.ts` in front of `target` and waits for its {"listening": url} line. */
export async function startBareProxy(target: string): Promise<SimProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    // As foreman runs: request.signal aborts only when a client goes away, not after every answer.
    args: ["run", "--allow-net=127.0.0.1", "--unstable-no-legacy-abort", BARE_PROXY, target],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  return await listening(child, "the bare proxy");
}

/**
 * Starts `bare_serial.ts` (the bare proxy with one request at the target at a time) in front of
 * `target` and waits for its {"listening": url} line.
 */
export async function startSerialProxy(target: string): Promise<SimProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net=127.0.0.1", "--unstable-no-legacy-abort", BARE_SERIAL, target],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  return await listening(child, "the serial bare proxy");
}

/** Resident set size of `pid` in MiB, from /proc/<pid>/status VmRSS (and the peak, VmHWM). */
export function rss(pid: number): { rssMiB: number; peakMiB: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
  return { rssMiB: kb("VmRSS") / 1024, peakMiB: kb("VmHWM") / 1024 };
}

/** The 1-minute load average, as `uptime` shows it. */
export function loadAverage(): number {
  return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
}

export interface Machine {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  deno: string;
  v8: string;
  sqlite: string;
  tempFs: string;
}

export function machine(): Machine {
  const cpuinfo = Deno.readTextFileSync("/proc/cpuinfo");
  const meminfo = Deno.readTextFileSync("/proc/meminfo");
  const db = new DatabaseSync(":memory:");
  const sqlite = String(db.prepare("SELECT sqlite_version() AS v").get()!.v);
  db.close();
  return {
    cpus: navigator.hardwareConcurrency,
    cpuModel: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "unknown",
    memoryGiB: Number(/^MemTotal:\s+(\d+)/m.exec(meminfo)?.[1]) / 1024 / 1024,
    kernel: Deno.osRelease(),
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    sqlite,
    tempFs: tempFilesystem(),
  };
}

/** The filesystem type the temporary directories (and so the SQLite files) live on. */
function tempFilesystem(): string {
  const tmp = Deno.env.get("TMPDIR") ?? "/tmp";
  let best = { point: "", type: "unknown" };
  for (const line of Deno.readTextFileSync("/proc/mounts").split("\n")) {
    const [, point, type] = line.split(" ");
    if (point && type && tmp.startsWith(point) && point.length > best.point.length) {
      best = { point, type };
    }
  }
  return best.type;
}

/** Waits until `check` holds, polling every `interval` ms; throws after `timeout` ms. */
export async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  options: { timeout?: number; interval?: number } = {},
): Promise<void> {
  const deadline = Date.now() + (options.timeout ?? 60_000);
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, options.interval ?? 10));
  }
}
