// foreman's settings table: every setting's TOML key, env name, flag, default, limits and help,
// and the Config the loader (config.ts) fills from it. README, foreman.toml and the flag parser
// are spelled from this table (scripts/settings-docs.ts) and checked against it.

import type { LogLevel } from "./log.ts";
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

/** The flag spelling of a setting: FOREMAN_MAX_WAIT → max-wait. */
export function flagName(setting: Setting): string {
  return setting.env.slice("FOREMAN_".length).toLowerCase().replaceAll("_", "-");
}

/** The `*_FILE` env name of a secret setting (FOREMAN_TOKEN → FOREMAN_TOKEN_FILE). */
export function secretFileVar(setting: Setting): string | undefined {
  return setting.kind === "secret" ? `${setting.env}_FILE` : undefined;
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
