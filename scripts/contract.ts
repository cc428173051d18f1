// The contract tier: Schemathesis fuzzes docs/openapi.yaml against a real foreman in front of the
// simulator, with a fixed seed, and fails on any 5xx and on any answer the spec does not allow.
// Schemathesis lives in a virtual environment in the user's cache, never in the repository; without
// Python, venv or pip the tier says in one line why it skipped (FOREMAN_CONTRACT_REQUIRED=1, which
// CI sets, makes that a failure). Extra arguments go to `schemathesis run`.

import { startForeman } from "../harness/foreman.ts";
import { OllamaSim } from "../sim/mod.ts";

const root = new URL("..", import.meta.url).pathname;
const REQUIREMENTS = `${root}scripts/contract-requirements.txt`;
const SETTINGS = `${root}scripts/contract.toml`;
const SPEC = `${root}docs/openapi.yaml`;

/** The seed every run uses unless FOREMAN_SEED says otherwise, so a failure replays. */
const SEED = 1114;
/** Cases per operation and phase: about 850 requests, well under a minute on 2 cores. */
const MAX_EXAMPLES = 40;

class Unavailable extends Error {
  override name = "Unavailable";
}

function cacheDir(): string {
  const base = Deno.env.get("XDG_CACHE_HOME") || `${Deno.env.get("HOME") ?? "/tmp"}/.cache`;
  return `${base}/foreman`;
}

async function run(
  cmd: string,
  args: string[],
  options: { cwd?: string } = {},
): Promise<{ ok: boolean; out: string }> {
  try {
    const out = await new Deno.Command(cmd, {
      args,
      cwd: options.cwd,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
    return { ok: out.success, out: text.trim() };
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return { ok: false, out: `${cmd} not found` };
    throw err;
  }
}

function lastLine(text: string): string {
  return text.split("\n").filter((l) => l.trim() !== "").at(-1) ?? "no output";
}

/** The schemathesis executable of a virtual environment keyed by the pinned requirements. */
async function schemathesis(): Promise<string> {
  const pins = await Deno.readFile(REQUIREMENTS);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", pins));
  const key = Array.from(digest.slice(0, 4), (b) => b.toString(16).padStart(2, "0")).join("");
  const venv = `${cacheDir()}/schemathesis-${key}`;
  const bin = `${venv}/bin/schemathesis`;
  try {
    await Deno.stat(`${venv}/.installed`);
    return bin;
  } catch {
    // Not there yet, or an install that was interrupted: start again.
  }
  await Deno.remove(venv, { recursive: true }).catch(() => {});
  const python = await run("python3", ["--version"]);
  if (!python.ok) throw new Unavailable(`python3 is not available (${lastLine(python.out)})`);
  console.log(`contract tier: installing Schemathesis into ${venv} (once)`);
  const created = await run("python3", ["-m", "venv", venv]);
  if (!created.ok) {
    throw new Unavailable(`python3 -m venv failed (${lastLine(created.out)})`);
  }
  const installed = await run(`${venv}/bin/pip`, [
    "install",
    "--disable-pip-version-check",
    "--quiet",
    "--timeout",
    "60",
    "--requirement",
    REQUIREMENTS,
  ]);
  if (!installed.ok) {
    await Deno.remove(venv, { recursive: true }).catch(() => {});
    throw new Unavailable(`pip could not install Schemathesis (${lastLine(installed.out)})`);
  }
  await Deno.writeTextFile(`${venv}/.installed`, "");
  return bin;
}

async function main(): Promise<number> {
  const required = Deno.env.get("FOREMAN_CONTRACT_REQUIRED") === "1";
  let bin: string;
  try {
    bin = await schemathesis();
  } catch (err) {
    if (!(err instanceof Unavailable)) throw err;
    if (required) {
      console.error(`contract tier failed: ${err.message}`);
      return 1;
    }
    console.log(`contract tier skipped: ${err.message}`);
    return 0;
  }

  const seed = Number(Deno.env.get("FOREMAN_SEED") ?? SEED);
  // The spec's examples name llama3.2:3b; the others are the simulator's usual models.
  const sim = await OllamaSim.start({
    loadMs: 1,
    tokenMs: 0,
    models: ["llama3.2:3b", "tiny-a", "embed-e"],
  });
  const fm = await startForeman({ ollamaUrl: sim.url, args: ["--poll-interval", "1s"] });
  // Schemathesis writes reports and caches into its working directory: keep them out of the repo.
  const work = await Deno.makeTempDir({ prefix: "foreman-contract-" });
  const started = Date.now();
  try {
    console.log(`contract tier: Schemathesis against ${fm.url}, seed ${seed}`);
    const status = await new Deno.Command(bin, {
      args: [
        "--config-file",
        SETTINGS,
        "run",
        SPEC,
        "--url",
        fm.url,
        "--header",
        `Authorization: Bearer ${fm.token}`,
        "--checks",
        "all",
        // DELETE /jobs/{id} cancels a job, which stays readable (state "cancelled") until job_ttl
        // as docs/openapi.yaml says; use_after_free expects a DELETE to remove what it names.
        "--exclude-checks",
        "use_after_free",
        "--seed",
        String(seed),
        "--max-examples",
        String(MAX_EXAMPLES),
        // One worker: with several, Python 3.11's ast module fails inside Hypothesis at random
        // ("AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        "--no-color",
        ...Deno.args,
      ],
      cwd: work,
      env: { PYTHONHASHSEED: "0" },
      stdout: "inherit",
      stderr: "inherit",
    }).spawn().status;
    const problems = fm.output().split("\n").filter((l) => l.includes('"level":"error"'));
    if (problems.length > 0) {
      console.error(`contract tier: foreman logged errors:\n${problems.slice(0, 5).join("\n")}`);
    }
    console.log(`contract tier finished in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return status.success && problems.length === 0 ? 0 : 1;
  } finally {
    await fm.stop();
    await sim.close();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) Deno.exit(await main());
