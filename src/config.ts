// foreman's configuration loader: it layers built-in defaults < foreman.toml < FOREMAN_* env <
// flags over the settings table (settings.ts). A bad value stops the start with a ConfigError whose
// message is the one line the operator sees.

import { parse as parseToml } from "smol-toml";
import { errorMessage, LOG_LEVELS, type LogLevel } from "./log.ts";
import { type Config, flagName, secretFileVar, type Setting, SETTINGS } from "./settings.ts";
import { parseDuration, parseSize } from "./units.ts";

/** The one-line reason foreman refuses to start. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

export interface LoadOptions {
  /** Flag values as parsed from the command line (flag name → value). */
  flags?: Record<string, string | boolean | undefined>;
  /** Environment lookup; defaults to Deno.env.get. Only FOREMAN_* names are asked for. */
  env?: (name: string) => string | undefined;
  /** File reader; defaults to Deno.readTextFileSync. */
  readFile?: (path: string) => string;
}

type Source = { value: string; from: string };

/** Loads and validates the configuration. Throws ConfigError with a single-line message. */
export function loadConfig(options: LoadOptions = {}): Config {
  const flags = options.flags ?? {};
  const env = options.env ?? ((name: string) => Deno.env.get(name));
  const readFile = options.readFile ?? ((path: string) => Deno.readTextFileSync(path));
  // Secret files are remembered: the daemon's permissions must let it read them too.
  const secretFiles: string[] = [];
  const secretFrom = (path: string, from: string) => {
    secretFiles.push(path);
    return readSecret(path, from, readFile);
  };

  const raw = new Map<keyof Config, Source>();
  for (const setting of SETTINGS) {
    raw.set(setting.field, { value: setting.default, from: "default" });
  }

  // The config file's own location comes from the flag or env only.
  const explicitPath = str(flags["config"]) ?? env("FOREMAN_CONFIG");
  const configPath = explicitPath ?? "./foreman.toml";
  let fileText: string | undefined;
  try {
    fileText = readFile(configPath);
  } catch (err) {
    if (explicitPath !== undefined || !(err instanceof Deno.errors.NotFound)) {
      throw new ConfigError(`Cannot read config file ${configPath}: ${errorMessage(err)}`);
    }
  }
  if (fileText !== undefined) {
    for (const [field, src] of fromToml(fileText, configPath, secretFrom)) raw.set(field, src);
  }

  for (const setting of SETTINGS) {
    const fileVar = secretFileVar(setting);
    if (fileVar) {
      const path = env(fileVar);
      if (path) {
        raw.set(setting.field, { value: secretFrom(path, fileVar), from: fileVar });
      }
    }
    const value = env(setting.env);
    if (value !== undefined) raw.set(setting.field, { value, from: setting.env });
  }

  for (const setting of SETTINGS) {
    const flag = flagName(setting);
    const fileFlag = secretFileVar(setting) ? `${flag}-file` : undefined;
    const path = fileFlag ? str(flags[fileFlag]) : undefined;
    if (path !== undefined) {
      raw.set(setting.field, {
        value: secretFrom(path, `--${fileFlag}`),
        from: `--${fileFlag}`,
      });
    }
    const value = flags[flag];
    if (value === undefined) continue;
    raw.set(setting.field, { value: String(value), from: `--${flag}` });
  }

  const config = {
    configPath,
    configLoaded: fileText !== undefined,
    secretFiles: [...new Set(secretFiles)],
  } as Config;
  for (const setting of SETTINGS) {
    const src = raw.get(setting.field)!;
    (config as unknown as Record<string, unknown>)[setting.field] = convert(setting, src);
  }
  checkSecureDefault(config);
  return config;
}

function readSecret(path: string, from: string, readFile: (p: string) => string): string {
  try {
    return readFile(path).trim();
  } catch (err) {
    throw new ConfigError(`Cannot read ${from} ${path}: ${errorMessage(err)}`);
  }
}

function fromToml(
  text: string,
  path: string,
  readSecretFile: (path: string, from: string) => string,
): Map<keyof Config, Source> {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    const first = errorMessage(err).split("\n")[0];
    throw new ConfigError(`Cannot parse ${path}: ${first}`);
  }
  const out = new Map<keyof Config, Source>();
  const byKey = new Map(SETTINGS.map((st) => [st.toml, st]));
  for (const [section, body] of Object.entries(doc)) {
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      throw new ConfigError(`Unknown setting '${section}' in ${path}: settings live in sections`);
    }
    for (const [key, value] of Object.entries(body)) {
      const dotted = `${section}.${key}`;
      const from = `${path} ${dotted}`;
      if (key.endsWith("_file")) {
        const setting = byKey.get(`${section}.${key.slice(0, -5)}`);
        if (setting?.kind === "secret" && typeof value === "string") {
          out.set(setting.field, { value: readSecretFile(value, from), from });
          continue;
        }
      }
      const setting = byKey.get(dotted);
      if (!setting) throw new ConfigError(`Unknown setting '${dotted}' in ${path}`);
      out.set(setting.field, { value: tomlValueText(value), from });
    }
  }
  return out;
}

function tomlValueText(value: unknown): string {
  if (Array.isArray(value)) return value.map((v) => String(v)).join(",");
  return String(value);
}

function convert(setting: Setting, src: Source): unknown {
  const text = src.value.trim();
  const bad = (why: string): never => {
    const shown = setting.kind === "secret" ? "(redacted)" : `'${src.value}'`;
    throw new ConfigError(`Invalid ${setting.env} from ${src.from}: ${shown} ${why}`);
  };
  switch (setting.kind) {
    case "string":
      return text;
    case "secret": {
      if (setting.list) return splitList(text);
      // Empty means unset (no token, unsigned events); anything else must pass the row's check.
      const problem = text === "" ? undefined : setting.check?.(text);
      return problem ? bad(problem) : text;
    }
    case "list":
      return splitList(text).map((h) => h.toLowerCase());
    case "bool": {
      if (/^(1|true|yes|on)$/i.test(text)) return true;
      if (/^(0|false|no|off|)$/i.test(text)) return false;
      return bad("is not a boolean (true or false)");
    }
    case "int": {
      if (!/^\d+$/.test(text)) return bad("is not a whole number");
      const n = Number(text);
      if (!Number.isSafeInteger(n)) return bad("is too large");
      if (setting.min !== undefined && n < setting.min) {
        return bad(`must be at least ${setting.min}`);
      }
      return n;
    }
    case "size": {
      const n = parseSize(text);
      if (n === undefined) return bad("is not a size (e.g. 262144, 256KiB, 16MiB)");
      if (n === 0 && setting.positive) return bad("must be larger than zero");
      return n;
    }
    case "duration": {
      const ms = parseDuration(text);
      if (ms === undefined) return bad("is not a duration (e.g. 30s, 5m, 24h, -1)");
      if (ms < 0 && !setting.allowNegative) return bad("must not be negative");
      if (ms === 0 && setting.positive) return bad("must be longer than zero");
      return ms;
    }
    case "level": {
      if (!LOG_LEVELS.includes(text as LogLevel)) {
        return bad(`is not a log level (${LOG_LEVELS.join(", ")})`);
      }
      return text;
    }
    case "url": {
      const url = URL.parse(text);
      if (!url) return bad("is not a URL");
      if (url.protocol !== "http:" && url.protocol !== "https:") return bad("must be http(s)");
      if (url.username || url.password) return bad("must not carry credentials; use a token");
      return url.origin + url.pathname.replace(/\/+$/, "");
    }
    case "addr": {
      const addr = parseAddr(text);
      if (!addr) return bad("is not host:port (e.g. 127.0.0.1:8080)");
      return addr;
    }
  }
}

/** Parses "host:port" or "[v6]:port"; port 0 asks the OS for a free one. */
export function parseAddr(text: string): { hostname: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s\[\]]+)):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const [, v6, host, portText] = m;
  const hostname = v6 ?? host;
  const port = Number(portText);
  if (hostname === undefined || port > 65535) return undefined;
  return { hostname, port };
}

export function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

function checkSecureDefault(config: Config): void {
  if (config.tokens.length > 0 || config.allowUnauthenticated) return;
  if (isLoopback(config.addr.hostname)) return;
  throw new ConfigError(
    `Refusing to listen on ${config.addr.hostname}:${config.addr.port} without FOREMAN_TOKEN: ` +
      `set a token, or FOREMAN_ALLOW_UNAUTHENTICATED=1 to serve anyone who can reach it`,
  );
}

function splitList(text: string): string[] {
  return text.split(",").map((p) => p.trim()).filter((p) => p !== "");
}

function str(v: string | boolean | undefined): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** A listen address as a URL host: IPv6 in brackets, wildcard addresses as loopback. */
export function addrUrl(addr: { hostname: string; port: number }): string {
  let host = addr.hostname;
  if (host === "0.0.0.0") host = "127.0.0.1";
  if (host === "::") host = "::1";
  return host.includes(":") ? `http://[${host}]:${addr.port}` : `http://${host}:${addr.port}`;
}
