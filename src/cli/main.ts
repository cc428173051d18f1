// The foreman command line. `serve` (the default) runs the daemon and `permissions` prints the Deno
// flags its configuration needs; both read the daemon's configuration. The client commands
// (submit, jobs, ps) talk to a running foreman over HTTP and never load that configuration.

import { parseArgs } from "node:util";
import { ConfigError, loadConfig } from "../config.ts";
import { type Config, flagOptions } from "../settings.ts";
import { createLogger } from "../log.ts";
import { broaderPermissions, missingPermissions, permissionFlags } from "../permissions.ts";
import { startDaemon } from "../app.ts";
import { clientSettings, CliError, ForemanClient, UsageError } from "./client.ts";
import { type Io, processIo } from "./io.ts";
import { jobs } from "./jobs.ts";
import { ps } from "./ps.ts";
import { submit } from "./submit.ts";

const USAGE = `foreman: an authenticated, queued Ollama endpoint

usage: foreman [serve] [flags]      run the daemon (default)
       foreman permissions [flags]  print the Deno permission flags this configuration needs
       foreman submit [flags]       queue a job on a running foreman (--wait to follow it)
       foreman jobs [flags]         list jobs on a running foreman
       foreman ps                   show a running foreman's target, queue and resident models

serve and permissions take every setting as a flag named after its env variable
(FOREMAN_MAX_WAIT → --max-wait); see foreman.toml and the README for the full table.
submit, jobs and ps reach foreman at FOREMAN_URL (default http://127.0.0.1:8080) with
FOREMAN_TOKEN; 'foreman <command> --help' describes their flags.`;

type ClientCommand = (args: string[], io: Io, client: () => ForemanClient) => Promise<number>;

const CLIENT_COMMANDS: Record<string, ClientCommand> = { submit, jobs, ps };

export async function main(args: string[], io: Io = processIo): Promise<number> {
  const [name = "", ...rest] = args;
  const command = CLIENT_COMMANDS[name];
  if (command) return await runClient(name, command, rest, io);
  return await daemonCommand(args, io);
}

async function runClient(
  name: string,
  command: ClientCommand,
  args: string[],
  io: Io,
): Promise<number> {
  try {
    return await command(args, io, () => new ForemanClient(clientSettings()));
  } catch (err) {
    if (err instanceof CliError) {
      io.err(`foreman ${name}: ${err.message}`);
      return 1;
    }
    if (err instanceof UsageError || isParseArgsError(err)) {
      io.err(`foreman ${name}: ${usageText(err as Error)} (see foreman ${name} --help)`);
      return 2;
    }
    throw err;
  }
}

/** serve and permissions: both need the daemon's configuration. */
async function daemonCommand(args: string[], io: Io): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: { ...flagOptions(), help: { type: "boolean", short: "h" } },
      allowPositionals: true,
    });
  } catch (err) {
    io.err(`foreman: ${(err as Error).message}`);
    return 2;
  }
  const [command = "serve", ...rest] = parsed.positionals;
  if (parsed.values.help || command === "help") {
    io.out(USAGE);
    return 0;
  }
  if (command in CLIENT_COMMANDS) {
    io.err(`foreman: put '${command}' first: foreman ${command} [flags]`);
    return 2;
  }
  if (command !== "serve" && command !== "permissions") {
    io.err(`foreman: unknown command '${command}'\n\n${USAGE}`);
    return 2;
  }
  if (rest.length > 0) {
    io.err(`foreman: unexpected argument '${rest[0]}'`);
    return 2;
  }
  let config;
  try {
    config = loadConfig({ flags: parsed.values as Record<string, string | boolean> });
  } catch (err) {
    if (err instanceof ConfigError || err instanceof Deno.errors.NotCapable) {
      io.err(`foreman: ${(err as Error).message}`);
      return 2;
    }
    throw err;
  }
  if (command === "permissions") {
    io.out(permissionFlags(config).join(" "));
    return 0;
  }

  const secrets = [...config.tokens, config.ollamaToken, config.webhookSecret].filter(Boolean);
  const log = createLogger({ level: config.logLevel, secrets });
  const missing = missingPermissions(config);
  if (missing.length > 0) {
    log.error("missing permissions for this configuration", { missing });
    io.err(`foreman: missing Deno permissions: ${missing.join(" ")}`);
    return 2;
  }
  const broader = broaderPermissions();
  if (broader.length > 0) {
    log.warn("running with broader permissions than this configuration needs", {
      extra: broader,
      needed: permissionFlags(config).join(" "),
    });
  }
  let daemon;
  try {
    daemon = await startDaemon(config, log);
  } catch (err) {
    const why = startFailure(err, config);
    if (why === undefined) throw err;
    log.error("cannot start", { error: why });
    io.err(`foreman: ${why}`);
    return 1;
  }
  const stop = () => void daemon.stop();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await daemon.finished;
  return 0;
}

/**
 * One line for the start-up failures that are the machine's, not foreman's: a database that cannot
 * be created or opened, an address already taken. Undefined for anything else (a bug: let it show).
 */
function startFailure(err: unknown, config: Config): string | undefined {
  const e = err as { code?: unknown; syscall?: unknown } | null;
  const message = (err as Error)?.message ?? String(err);
  if (err instanceof Deno.errors.AddrInUse) {
    return `cannot listen on ${config.addr.hostname}:${config.addr.port} (FOREMAN_ADDR): ${message}`;
  }
  const fileOrDb = e?.code === "ERR_SQLITE_ERROR" || typeof e?.syscall === "string" ||
    err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied ||
    err instanceof Deno.errors.NotFound || err instanceof Deno.errors.AlreadyExists;
  if (fileOrDb) return `cannot open the database ${config.db} (FOREMAN_DB): ${message}`;
  return undefined;
}

/** parseArgs reports unknown or malformed flags as TypeErrors with an ERR_PARSE_ARGS_* code. */
function isParseArgsError(err: unknown): boolean {
  return String((err as { code?: unknown })?.code ?? "").startsWith("ERR_PARSE_ARGS");
}

function usageText(err: Error): string {
  const unknown = /^Unknown option '([^']+)'/.exec(err.message);
  return unknown ? `unknown flag ${unknown[1]}` : err.message;
}
