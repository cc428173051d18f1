// `deno task compile`: builds one executable (dist/foreman by default) with the daemon's
// least-privilege flags baked in, computed from the configuration exactly as `deno task start`
// does. deno compile downloads Deno's runtime (denort) once; without a network that fails, and
// this script says so in one line instead of a stack trace.

import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { ConfigError, loadConfig } from "../src/config.ts";
import { flagOptions } from "../src/settings.ts";
import { DENO_JSON, MAIN } from "../src/launcher.ts";
import { permissionFlags } from "../src/permissions.ts";

const USAGE =
  `usage: deno task compile [--output PATH] [--target TRIPLE] [--skip-offline] [foreman flags]

Compiles foreman into one executable whose Deno permissions are those 'foreman permissions' prints
for the same configuration (flags, FOREMAN_* variables, foreman.toml). Relative paths are resolved
against the current directory and baked in as absolute paths, so run the binary with the same
configuration; if it differs, the daemon refuses to start and names the missing flag.

  -o, --output PATH   where to write the executable (default dist/foreman)
      --target TRIPLE cross-compile (deno compile --target)
      --skip-offline  exit 0 with a note when the runtime cannot be downloaded (for CI)`;

/** How deno compile reports that it could not download the runtime it embeds. */
const RUNTIME_URL = /https:\/\/dl\.deno\.land\/\S*denort/;
const NETWORK_FAILURE = /error sending request|dns error|connect|timed out|proxy|status code/i;

export function compileArgs(
  args: string[],
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): { denoArgs: string[]; flags: string[]; output: string; skipOffline: boolean; help: boolean } {
  const { values } = parseArgs({
    args,
    options: {
      ...flagOptions(),
      output: { type: "string", short: "o" },
      target: { type: "string" },
      "skip-offline": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  const { output: out, target, "skip-offline": skip, help, ...settings } = values;
  const output = resolve(out ?? "dist/foreman");
  const config = loadConfig({ flags: settings as Record<string, string | boolean>, env });
  const flags = permissionFlags(config);
  const denoArgs = [
    "compile",
    "--config",
    DENO_JSON,
    "--exclude-unused-npm",
    ...flags,
    ...(target ? ["--target", target] : []),
    "--output",
    output,
    MAIN,
  ];
  return { denoArgs, flags, output, skipOffline: skip ?? false, help: help ?? false };
}

/** Whether deno compile's error output says the runtime download failed. */
export function runtimeUnavailable(stderr: string): boolean {
  return RUNTIME_URL.test(stderr) && NETWORK_FAILURE.test(stderr);
}

if (import.meta.main) {
  let plan;
  try {
    plan = compileArgs(Deno.args);
  } catch (err) {
    if (!(err instanceof ConfigError || (err as { code?: string }).code?.startsWith("ERR_PARSE"))) {
      throw err;
    }
    console.error(`compile: ${(err as Error).message}`);
    Deno.exit(2);
  }
  if (plan.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const result = await new Deno.Command(Deno.execPath(), {
    args: plan.denoArgs,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(result.stderr);
  if (result.success) {
    console.log(`compile: wrote ${plan.output} (flags: ${plan.flags.join(" ")})`);
    Deno.exit(0);
  }
  if (runtimeUnavailable(stderr)) {
    const line = "compile: deno compile could not download Deno's runtime (denort) from " +
      "dl.deno.land; it needs a network once (or DENORT_BIN pointing at a local denort binary)";
    if (plan.skipOffline) {
      console.log(`${line}: skipped`);
      Deno.exit(0);
    }
    console.error(line);
    Deno.exit(1);
  }
  await Deno.stderr.write(result.stderr);
  console.error(`compile: deno compile failed (exit code ${result.code})`);
  Deno.exit(1);
}
