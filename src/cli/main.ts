// The foreman command line. `serve` (the default) runs the daemon; the other subcommands talk to a
// running foreman over HTTP or print what an operator needs (the permission flags).

import { parseArgs } from "node:util";
import { ConfigError, flagOptions, loadConfig } from "../config.ts";
import { createLogger } from "../log.ts";
import { broaderPermissions, missingPermissions, permissionFlags } from "../permissions.ts";
import { startDaemon } from "../app.ts";

const USAGE = `foreman: an authenticated, queued Ollama endpoint

usage: foreman [serve] [flags]      run the daemon (default)
       foreman permissions [flags]  print the deno permission flags this configuration needs

Every setting is a flag named after its env variable (FOREMAN_MAX_WAIT → --max-wait);
see foreman.toml and the README for the full table.`;

export async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: { ...flagOptions(), help: { type: "boolean", short: "h" } },
      allowPositionals: true,
    });
  } catch (err) {
    console.error(`foreman: ${(err as Error).message}`);
    return 2;
  }
  const [command = "serve", ...rest] = parsed.positionals;
  if (parsed.values.help) {
    console.log(USAGE);
    return 0;
  }
  if (rest.length > 0) {
    console.error(`foreman: unexpected argument '${rest[0]}'`);
    return 2;
  }
  let config;
  try {
    config = loadConfig({ flags: parsed.values as Record<string, string | boolean> });
  } catch (err) {
    if (err instanceof ConfigError || err instanceof Deno.errors.NotCapable) {
      console.error(`foreman: ${(err as Error).message}`);
      return 2;
    }
    throw err;
  }
  switch (command) {
    case "permissions":
      console.log(permissionFlags(config).join(" "));
      return 0;
    case "serve":
      break;
    default:
      console.error(`foreman: unknown command '${command}'\n\n${USAGE}`);
      return 2;
  }

  const secrets = [...config.tokens, config.ollamaToken, config.webhookSecret].filter(Boolean);
  const log = createLogger({ level: config.logLevel, secrets });
  const missing = missingPermissions(config);
  if (missing.length > 0) {
    log.error("missing permissions for this configuration", { missing });
    console.error(`foreman: missing Deno permissions: ${missing.join(" ")}`);
    return 2;
  }
  const broader = broaderPermissions();
  if (broader.length > 0) {
    log.warn("running with broader permissions than this configuration needs", {
      extra: broader,
      needed: permissionFlags(config).join(" "),
    });
  }
  const daemon = await startDaemon(config, log);
  const stop = () => void daemon.stop();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await daemon.finished;
  return 0;
}
