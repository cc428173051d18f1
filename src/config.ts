// foreman's settings: one table that gives every setting its TOML key, env name, flag and default,
// and the loader that layers built-in defaults < foreman.toml < FOREMAN_* env < flags. A bad value
// stops the start with a ConfigError whose message is the one line the operator sees.

import { parse as parseToml } from "smol-toml";
import { errorMessage, LOG_LEVELS, type LogLevel } from "./log.ts";
import { parseDuration, parseSize } from "./units.ts";
import { webhookSecretProblem } from "./webhooks/signing.ts";

type Kind =
  | "addr"
  | "url"
  | "string"
  | "secret"
  | "list"
  | "duration"
  | "int"
  | "size"
  | "bool"
  | "level";

export interface Setting {
  /** Name of the field in Config. */
  field: keyof Config;
  /** Dotted TOML key: section.key. */
  toml: string;
  env: string;
  kind: Kind;
  default: string;
  help: string;
  /** int: the smallest value accepted. */
  min?: number;
  /** size, duration: zero is refused (a limit or period of nothing would stop foreman working). */
  positive?: boolean;
  /** duration: a negative value is accepted (Ollama's "for ever", -1). */
  allowNegative?: boolean;
  /** secret: a comma-separated list (several tokens, for rotation). */
  list?: boolean;
  /** Why a non-empty value cannot be used, or undefined when it can (never quotes the value). */
  check?: (value: string) => string | undefined;
}

/** Every setting foreman knows. README, foreman.toml and the flag parser are checked against it. */
export const SETTINGS: readonly Setting[] = [
  {
    field: "addr",
    toml: "server.addr",
    env: "FOREMAN_ADDR",
    kind: "addr",
    default: "127.0.0.1:8080",
    help: "listen address host:port",
  },
  {
    field: "publicUrl",
    toml: "server.public_url",
    env: "FOREMAN_PUBLIC_URL",
    kind: "string",
    default: "",
    help:
      "base URL in artifact links sent to webhooks (derived from the listen address when empty)",
  },
  {
    field: "maxBody",
    toml: "server.max_body",
    env: "FOREMAN_MAX_BODY",
    kind: "size",
    default: "16MiB",
    help: "request body limit",
  },
  {
    field: "bodyTimeout",
    toml: "server.body_timeout",
    env: "FOREMAN_BODY_TIMEOUT",
    kind: "duration",
    default: "60s",
    positive: true,
    help: "time a request body may take to arrive in full before the request gets 408",
  },
  {
    field: "maxWatchers",
    toml: "server.max_watchers",
    env: "FOREMAN_MAX_WATCHERS",
    kind: "int",
    default: "1000",
    min: 1,
    help: "event streams and long polls of jobs open at once before new ones get 503",
  },
  {
    field: "healthDetail",
    toml: "server.health_detail",
    env: "FOREMAN_HEALTH_DETAIL",
    kind: "bool",
    default: "false",
    help: "show /healthz's target, queue and models without a token",
  },
  {
    field: "logLevel",
    toml: "server.log_level",
    env: "FOREMAN_LOG_LEVEL",
    kind: "level",
    default: "info",
    help: "debug|info|warn|error",
  },
  {
    field: "ollamaUrl",
    toml: "target.url",
    env: "FOREMAN_OLLAMA_URL",
    kind: "url",
    default: "http://127.0.0.1:11434",
    help: "the target",
  },
  {
    field: "ollamaToken",
    toml: "target.token",
    env: "FOREMAN_OLLAMA_TOKEN",
    kind: "secret",
    default: "",
    help: "bearer token sent to the target (for a target behind its own proxy)",
  },
  {
    field: "pollInterval",
    toml: "target.poll_interval",
    env: "FOREMAN_POLL_INTERVAL",
    kind: "duration",
    default: "30s",
    positive: true,
    help: "inventory poll period",
  },
  {
    field: "targetTimeout",
    toml: "target.timeout",
    env: "FOREMAN_TARGET_TIMEOUT",
    kind: "duration",
    default: "10m",
    positive: true,
    help: "longest silence from the target before a request counts as stalled",
  },
  {
    field: "maxAnswer",
    toml: "target.max_answer",
    env: "FOREMAN_MAX_ANSWER",
    kind: "size",
    default: "64MiB",
    positive: true,
    help: "largest answer line relayed and answer stored from the target; past it the job fails",
  },
  {
    field: "allowModelManagement",
    toml: "target.allow_model_management",
    env: "FOREMAN_ALLOW_MODEL_MANAGEMENT",
    kind: "bool",
    default: "false",
    help: "pass /api/pull, /api/create, /api/delete … through instead of refusing them with 403",
  },
  {
    field: "tokens",
    toml: "auth.token",
    env: "FOREMAN_TOKEN",
    kind: "secret",
    default: "",
    list: true,
    help: "inbound bearer token(s), comma-separated for rotation",
  },
  {
    field: "allowUnauthenticated",
    toml: "auth.allow_unauthenticated",
    env: "FOREMAN_ALLOW_UNAUTHENTICATED",
    kind: "bool",
    default: "false",
    help: "allow a non-loopback listen address without a token",
  },
  {
    field: "db",
    toml: "queue.db",
    env: "FOREMAN_DB",
    kind: "string",
    default: "./data/foreman.db",
    help: "SQLite file",
  },
  {
    field: "maxAttempts",
    toml: "queue.max_attempts",
    env: "FOREMAN_MAX_ATTEMPTS",
    kind: "int",
    default: "3",
    min: 1,
    help: "attempts before a job fails",
  },
  {
    field: "maxQueue",
    toml: "queue.max_queue",
    env: "FOREMAN_MAX_QUEUE",
    kind: "int",
    default: "10000",
    min: 1,
    help: "queued jobs accepted before new work gets 503",
  },
  {
    field: "maxWait",
    toml: "queue.max_wait",
    env: "FOREMAN_MAX_WAIT",
    kind: "duration",
    default: "0",
    help: "starvation bound for drain-by-model (0 = off)",
  },
  {
    field: "jobTtl",
    toml: "queue.job_ttl",
    env: "FOREMAN_JOB_TTL",
    kind: "duration",
    default: "24h",
    positive: true,
    help: "how long finished jobs and their artifacts are kept",
  },
  {
    field: "retryBase",
    toml: "queue.retry_base",
    env: "FOREMAN_RETRY_BASE",
    kind: "duration",
    default: "1s",
    help: "first backoff after the target could not be reached (doubles, capped at 30s)",
  },
  {
    field: "maxMetadata",
    toml: "jobs.max_metadata",
    env: "FOREMAN_MAX_METADATA",
    kind: "size",
    default: "64KiB",
    positive: true,
    help: "largest metadata a job takes, as JSON; past it the submission gets 400",
  },
  {
    field: "embedModel",
    toml: "residency.embed_model",
    env: "FOREMAN_EMBED_MODEL",
    kind: "string",
    default: "",
    help: "the resident embedding model (slot 1)",
  },
  {
    field: "keepAlive",
    toml: "residency.keep_alive",
    env: "FOREMAN_KEEP_ALIVE",
    kind: "duration",
    default: "-1",
    allowNegative: true,
    help: "keep_alive sent with worker jobs (-1 = until swapped out)",
  },
  {
    field: "webhookSecret",
    toml: "webhooks.secret",
    env: "FOREMAN_WEBHOOK_SECRET",
    kind: "secret",
    default: "",
    check: webhookSecretProblem,
    help: "HMAC key for webhook signatures (whsec_<base64> accepted)",
  },
  {
    field: "webhookHosts",
    toml: "webhooks.hosts",
    env: "FOREMAN_WEBHOOK_HOSTS",
    kind: "list",
    default: "",
    help: "allowlist of host[:port] webhooks may go to",
  },
  {
    field: "webhookMaxAttempts",
    toml: "webhooks.max_attempts",
    env: "FOREMAN_WEBHOOK_MAX_ATTEMPTS",
    kind: "int",
    default: "12",
    min: 1,
    help: "delivery attempts before an event is dead",
  },
  {
    field: "webhookRetryBase",
    toml: "webhooks.retry_base",
    env: "FOREMAN_WEBHOOK_RETRY_BASE",
    kind: "duration",
    default: "1s",
    help: "first delivery backoff (doubles with jitter, capped at 10m)",
  },
  {
    field: "webhookTimeout",
    toml: "webhooks.timeout",
    env: "FOREMAN_WEBHOOK_TIMEOUT",
    kind: "duration",
    default: "10s",
    help: "how long a receiver may take to answer",
  },
  {
    field: "inlineLimit",
    toml: "artifacts.inline_limit",
    env: "FOREMAN_INLINE_LIMIT",
    kind: "size",
    default: "262144",
    help: "artifacts up to this many bytes are inlined",
  },
];

export interface Config {
  addr: { hostname: string; port: number };
  publicUrl: string;
  maxBody: number;
  bodyTimeout: number;
  maxWatchers: number;
  healthDetail: boolean;
  logLevel: LogLevel;
  ollamaUrl: string;
  ollamaToken: string;
  pollInterval: number;
  targetTimeout: number;
  maxAnswer: number;
  allowModelManagement: boolean;
  tokens: string[];
  allowUnauthenticated: boolean;
  db: string;
  maxAttempts: number;
  maxQueue: number;
  maxWait: number;
  jobTtl: number;
  retryBase: number;
  maxMetadata: number;
  embedModel: string;
  keepAlive: number;
  webhookSecret: string;
  webhookHosts: string[];
  webhookMaxAttempts: number;
  webhookRetryBase: number;
  webhookTimeout: number;
  inlineLimit: number;
  /** The config file foreman looks at (it may not exist when it is the default path). */
  configPath: string;
  /** Whether that file existed and was read. */
  configLoaded: boolean;
  /** Files secrets were read from (*_FILE), which the daemon must be allowed to read. */
  secretFiles: string[];
}

/** The one-line reason foreman refuses to start. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** The flag spelling of a setting: FOREMAN_MAX_WAIT → max-wait. */
export function flagName(setting: Setting): string {
  return setting.env.slice("FOREMAN_".length).toLowerCase().replaceAll("_", "-");
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

/** The `*_FILE` env name of a secret setting (FOREMAN_TOKEN → FOREMAN_TOKEN_FILE). */
export function secretFileVar(setting: Setting): string | undefined {
  return setting.kind === "secret" ? `${setting.env}_FILE` : undefined;
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

/** Options for node:util parseArgs covering every setting, its *-file variant and --config. */
export function flagOptions(): Record<string, { type: "string" | "boolean" }> {
  const out: Record<string, { type: "string" | "boolean" }> = { config: { type: "string" } };
  for (const setting of SETTINGS) {
    const name = flagName(setting);
    out[name] = { type: setting.kind === "bool" ? "boolean" : "string" };
    if (secretFileVar(setting)) out[`${name}-file`] = { type: "string" };
  }
  return out;
}

/** A listen address as a URL host: IPv6 in brackets, wildcard addresses as loopback. */
export function addrUrl(addr: { hostname: string; port: number }): string {
  let host = addr.hostname;
  if (host === "0.0.0.0") host = "127.0.0.1";
  if (host === "::") host = "::1";
  return host.includes(":") ? `http://[${host}]:${addr.port}` : `http://${host}:${addr.port}`;
}
