// Runs the router tier (tests/router/): LiteLLM's proxy in front of two foremans, as
// docs/scaling.md describes. Uses LiteLLM when scripts/litellm.sh finds it (CI's .ci/run installs
// it first with `scripts/litellm.sh install`; FOREMAN_ROUTER_INSTALL=1 makes this script do it), and
// otherwise says in one line why the tier is skipped (FOREMAN_ROUTER_REQUIRED=1, which CI sets, makes
// that a failure).

const root = new URL("..", import.meta.url).pathname;

async function litellm(subcommand: "install" | "path"): Promise<{ ok: boolean; out: string }> {
  const out = await new Deno.Command("bash", {
    args: [`${root}scripts/litellm.sh`, subcommand],
    stdout: "piped",
    // The install narrates its progress on stderr; let the user see it.
    stderr: subcommand === "install" ? "inherit" : "piped",
  }).output();
  const text = new TextDecoder().decode(out.success ? out.stdout : out.stderr).trim();
  return { ok: out.success, out: text.replace(/^litellm: /, "") };
}

async function main(): Promise<number> {
  const install = Deno.env.get("FOREMAN_ROUTER_INSTALL") === "1";
  const required = Deno.env.get("FOREMAN_ROUTER_REQUIRED") === "1";
  let found = await litellm("path");
  if (!found.ok && install) found = await litellm("install");
  if (!found.ok && required) {
    console.error(`router tier failed: ${found.out.split("\n").at(-1)}`);
    return 1;
  }
  if (!found.ok) {
    // A machine without PyPI or python3 cannot run this tier; that is a skip, not a failure.
    console.log(
      `router tier skipped: ${found.out.split("\n").at(-1)}` +
        (install ? "" : "; set FOREMAN_ROUTER_INSTALL=1 to install it"),
    );
    return 0;
  }
  const bin = found.out.split("\n").at(-1)!;
  console.log(`router tier: LiteLLM at ${bin}`);
  const started = Date.now();
  const status = await new Deno.Command(Deno.execPath(), {
    args: ["test", "--allow-all", ...Deno.args, `${root}tests/router/`],
    cwd: root,
    env: { LITELLM_BIN: bin },
    stdout: "inherit",
    stderr: "inherit",
  }).spawn().status;
  console.log(`router tier finished in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return status.code;
}

if (import.meta.main) Deno.exit(await main());
