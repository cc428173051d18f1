// `deno task start`: reads the configuration, computes the narrowest Deno permissions it needs and
// runs the daemon under exactly those flags. The launcher itself may spawn processes; the daemon
// it starts cannot.

import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { ConfigError, flagOptions, loadConfig } from "./config.ts";
import { permissionFlags } from "./permissions.ts";

export const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));
export const DENO_JSON = fileURLToPath(new URL("../deno.json", import.meta.url));

/** The full `deno` argument list that runs the daemon for these foreman arguments. */
export function daemonArgs(
  args: string[],
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): string[] {
  const { values } = parseArgs({
    args,
    options: flagOptions(),
    allowPositionals: true,
    strict: false,
  });
  const config = loadConfig({ flags: values as Record<string, string | boolean>, env });
  return ["run", "--config", DENO_JSON, ...permissionFlags(config), MAIN, ...args];
}

if (import.meta.main) {
  let args: string[];
  try {
    args = daemonArgs(Deno.args);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`foreman: ${err.message}`);
    Deno.exit(2);
  }
  const child = new Deno.Command(Deno.execPath(), {
    args,
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => child.kill(signal));
  }
  Deno.exit((await child.status).code);
}
