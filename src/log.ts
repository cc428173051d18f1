// Structured logs: one JSON object per line on stderr. Secrets handed to the logger are scrubbed
// from every line as a last line of defence; callers still never pass them on purpose.

/** How much is logged: a level and everything above it. */
export type LogLevel = "debug" | "info" | "warn" | "error";

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** The levels from the most to the least verbose. */
export const LOG_LEVELS = Object.keys(LEVELS) as LogLevel[];

export type Fields = Record<string, unknown>;

export interface Logger {
  /** Whether lines of `level` are written: a caller can skip building the fields of one that is not. */
  enabled(level: LogLevel): boolean;
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
}

export interface LoggerOptions {
  level?: LogLevel;
  /** Values that must never appear in a log line (tokens, webhook secret). */
  secrets?: readonly string[];
  /** Where lines go; stderr by default. */
  write?: (line: string) => void;
  now?: () => number;
}

const encoder = new TextEncoder();

export function createLogger(options: LoggerOptions = {}): Logger {
  const min = LEVELS[options.level ?? "info"];
  const secrets = (options.secrets ?? []).filter((s) => s.length >= 4);
  const write = options.write ?? ((line: string) => Deno.stderr.writeSync(encoder.encode(line)));
  const now = options.now ?? Date.now;
  const emit = (level: LogLevel) => (msg: string, fields: Fields = {}) => {
    if (LEVELS[level] < min) return;
    let line = JSON.stringify({ time: new Date(now()).toISOString(), level, msg, ...fields });
    for (const secret of secrets) line = line.replaceAll(secret, "[redacted]");
    write(line + "\n");
  };
  return {
    enabled: (level) => LEVELS[level] >= min,
    debug: emit("debug"),
    info: emit("info"),
    warn: emit("warn"),
    error: emit("error"),
  };
}

/** A logger that drops everything, for unit tests. */
export const silentLogger: Logger = createLogger({ write: () => {} });

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
