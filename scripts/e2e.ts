// Runs the end-to-end tier (tests/e2e/) against a real Ollama when a binary is obtainable, and
// otherwise says in one line why it is skipped, so `deno task test` stays green on machines
// without one. FOREMAN_E2E_BUILD=1 builds the binary first (CI sets it); extra args go to deno test.

const root = new URL("..", import.meta.url).pathname;
const script = `${root}scripts/real-ollama.sh`;

async function realOllama(subcommand: "build" | "path"): Promise<{ ok: boolean; out: string }> {
  const out = await new Deno.Command("bash", {
    args: [script, subcommand],
    stdout: "piped",
    // The build narrates its progress on stderr; let the user see it.
    stderr: subcommand === "build" ? "inherit" : "piped",
  }).output();
  const text = new TextDecoder().decode(out.success ? out.stdout : out.stderr).trim();
  return { ok: out.success, out: text.replace(/^real-ollama: /, "") };
}

async function main(): Promise<number> {
  const build = Deno.env.get("FOREMAN_E2E_BUILD") === "1";
  const found = await realOllama(build ? "build" : "path");
  if (!found.ok) {
    if (build) {
      console.error(`e2e tier failed: ${found.out}`);
      return 1;
    }
    console.log(`e2e tier skipped: ${found.out}; set FOREMAN_E2E_BUILD=1 to build it`);
    return 0;
  }
  const bin = found.out.split("\n").at(-1)!;
  console.log(`e2e tier: real Ollama at ${bin}`);
  const started = Date.now();
  const status = await new Deno.Command(Deno.execPath(), {
    // Serial on purpose: each file runs its own Ollama, and timing assertions (load_duration,
    // swaps) would blur if several fought over two cores.
    args: ["test", "--allow-all", ...Deno.args, `${root}tests/e2e/`],
    cwd: root,
    env: { FOREMAN_E2E: "1", OLLAMA_BIN: bin },
    stdout: "inherit",
    stderr: "inherit",
  }).spawn().status;
  console.log(`e2e tier finished in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return status.code;
}

if (import.meta.main) Deno.exit(await main());
