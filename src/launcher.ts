// `deno task start`: reads the configuration, computes the narrowest Deno permissions it needs and
// runs the daemon under exactly those flags. The launcher needs --allow-run and a broad
// --allow-read only until the daemon is spawned; then it gives up every permission it holds.

import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { resolve } from "node:path";
import { ConfigError, loadConfig } from "./config.ts";
import { type Config, flagOptions } from "./settings.ts";
import { createLogger } from "./log.ts";
import { dropPermissions, permissionFlags } from "./permissions.ts";

export const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));
export const DENO_JSON = fileURLToPath(new URL("../deno.json", import.meta.url));

/** The daemon's `deno` arguments for these foreman arguments, and the configuration they load. */
export function launchPlan(
  args: string[],
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): { args: string[]; config: Config } {
  const { values } = parseArgs({
    args,
    options: flagOptions(),
    allowPositionals: true,
    strict: false,
  });
  const config = loadConfig({ flags: values as Record<string, string | boolean>, env });
  return {
    args: ["run", "--config", DENO_JSON, ...permissionFlags(config), MAIN, ...args],
    config,
  };
}

/** The full `deno` argument list that runs the daemon for these foreman arguments. */
export function daemonArgs(
  args: string[],
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): string[] {
  return launchPlan(args, env).args;
}

if (import.meta.main) {
  let plan: ReturnType<typeof launchPlan>;
  try {
    plan = launchPlan(Deno.args);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`foreman: ${err.message}`);
    Deno.exit(2);
  }
  const deno = Deno.execPath();
  const child = new Deno.Command(deno, {
    args: plan.args,
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => child.kill(signal));
  }
  // Forwarding signals and waiting need no permission. The task's flags cannot name the binary
  // spawned above (--allow-run=deno grants the PATH entry, often a symlink or npm's shim, and
  // Deno does not follow it) nor the files the configuration names, so they stay broad and are
  // dropped here, before the daemon does anything: --no-prompt makes any later use a refusal.
  const held = dropPermissions([
    { name: "run", command: deno },
    { name: "read", path: resolve(plan.config.configPath) },
    ...plan.config.secretFiles.map((path) => ({ name: "read", path: resolve(path) }) as const),
    { name: "env", variable: "FOREMAN_TOKEN" },
  ]);
  const log = createLogger({ level: plan.config.logLevel });
  if (held.length > 0) log.warn("launcher could not drop its permissions", { held });
  else log.debug("launcher dropped its permissions", { held });
  Deno.exit((await child.status).code);
}
