// The permission sandbox: the narrowest Deno flags the configuration needs, computed in one place
// that the launcher (deno task start), `foreman permissions` and the daemon's own start-up check
// all share. Network: the listen address, the target, the webhook hosts. Files: the database
// directory, the config file and any secret files. Env: FOREMAN_* only. No run, ffi or sys. The
// launcher, which needs more only to start the daemon, drops everything after (dropPermissions).

import { dirname, resolve } from "node:path";
import type { Config } from "./settings.ts";

export interface Needs {
  net: string[];
  read: string[];
  write: string[];
  env: string;
}

function hostPort(url: string): string {
  const u = new URL(url);
  const port = u.port || (u.protocol === "https:" ? "443" : "80");
  return `${u.hostname}:${port}`;
}

function listenHost(config: Config): string {
  const { hostname, port } = config.addr;
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  // Port 0 lets the OS choose, so the grant cannot name the port.
  return port === 0 ? host : `${host}:${port}`;
}

export function needs(config: Config, cwd = Deno.cwd()): Needs {
  const dbDir = resolve(cwd, dirname(config.db));
  // The config file is granted even when absent: the daemon looks for it either way.
  const read = [dbDir, resolve(cwd, config.configPath)];
  for (const f of config.secretFiles) read.push(resolve(cwd, f));
  const net = [listenHost(config), hostPort(config.ollamaUrl), ...config.webhookHosts];
  return {
    net: [...new Set(net)],
    read: [...new Set(read)],
    write: [dbDir],
    env: "FOREMAN_*",
  };
}

/** The `deno run` flags for the daemon, in a stable order. */
export function permissionFlags(config: Config, cwd = Deno.cwd()): string[] {
  const n = needs(config, cwd);
  return [
    `--allow-net=${n.net.join(",")}`,
    `--allow-read=${n.read.join(",")}`,
    `--allow-write=${n.write.join(",")}`,
    `--allow-env=${n.env}`,
    "--no-prompt",
    // request.signal then aborts only when a client goes away, not after every answer.
    "--unstable-no-legacy-abort",
  ];
}

/** Flags the running process lacks for this configuration; empty when it holds them all. */
export function missingPermissions(config: Config, cwd = Deno.cwd()): string[] {
  const n = needs(config, cwd);
  const missing: string[] = [];
  const lacks = (desc: Deno.PermissionDescriptor) =>
    Deno.permissions.querySync(desc).state !== "granted";
  for (const host of n.net) if (lacks({ name: "net", host })) missing.push(`--allow-net=${host}`);
  for (const path of n.read) {
    if (lacks({ name: "read", path })) missing.push(`--allow-read=${path}`);
  }
  for (const path of n.write) {
    if (lacks({ name: "write", path })) missing.push(`--allow-write=${path}`);
  }
  if (lacks({ name: "env", variable: "FOREMAN_DB" })) missing.push("--allow-env=FOREMAN_*");
  return missing;
}

const PERMISSION_NAMES: readonly Deno.PermissionName[] = [
  "read",
  "write",
  "net",
  "env",
  "sys",
  "run",
  "ffi",
];

/**
 * Gives up every permission the process holds, scoped grants included, and returns what is still
 * granted among each kind as a whole and `checks` (the grants the caller used): empty unless Deno
 * kept one. For a process whose remaining work needs none, such as the launcher waiting on the
 * daemon.
 */
export function dropPermissions(checks: readonly Deno.PermissionDescriptor[] = []): string[] {
  for (const name of PERMISSION_NAMES) Deno.permissions.revokeSync({ name });
  const all = PERMISSION_NAMES.map((name) => ({ name }) as Deno.PermissionDescriptor);
  return [...all, ...checks]
    .filter((d) => Deno.permissions.querySync(d).state === "granted")
    .map((d) => {
      const { name, ...scope } = d as { name: string } & Record<string, unknown>;
      const target = Object.values(scope)[0];
      return target === undefined ? name : `${name}:${target}`;
    });
}

/** Permissions the process holds beyond what it needs (a warning, not an error). */
export function broaderPermissions(): string[] {
  const extra: string[] = [];
  const has = (desc: Deno.PermissionDescriptor) =>
    Deno.permissions.querySync(desc).state === "granted";
  if (has({ name: "run" })) extra.push("--allow-run");
  if (has({ name: "ffi" })) extra.push("--allow-ffi");
  if (has({ name: "sys" })) extra.push("--allow-sys");
  if (has({ name: "net" })) extra.push("--allow-net (any host)");
  if (has({ name: "read" })) extra.push("--allow-read (any path)");
  if (has({ name: "write" })) extra.push("--allow-write (any path)");
  if (has({ name: "env" })) extra.push("--allow-env (every variable)");
  return extra;
}
