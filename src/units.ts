// Parsing of the two unit-bearing value kinds in foreman's settings: durations in Go/Ollama syntax
// ("30s", "1h30m", "-1") and byte sizes ("16MiB", "262144"). Kept apart from config.ts because the
// worker needs the same duration rules when it sends keep_alive to the target.

const DURATION_UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Parses a Go-style duration into milliseconds. A bare integer is accepted only for 0 and negative
 * values (Ollama's "keep forever" spelling `-1`), since "30" is ambiguous between seconds and
 * milliseconds. Returns `undefined` when the text is not a duration.
 */
export function parseDuration(text: string): number | undefined {
  const s = text.trim();
  if (/^-?\d+$/.test(s)) {
    const n = Number(s);
    return n <= 0 ? n * 1000 : undefined;
  }
  const m = /^(-?)((?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+)$/.exec(s);
  if (!m) return undefined;
  const [, sign, parts = ""] = m;
  let total = 0;
  for (const [, amount, unit = ""] of parts.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) {
    total += Number(amount) * (DURATION_UNITS[unit] ?? NaN);
  }
  return sign === "-" ? -total : total;
}

/** Formats milliseconds the way an operator wrote them, e.g. 90000 → "1m30s". */
export function formatDuration(ms: number): string {
  if (ms < 0) return "-1";
  if (ms === 0) return "0s";
  const parts: string[] = [];
  let rest = ms;
  for (const [unit, size] of [["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  if (rest > 0) parts.push(`${rest}ms`);
  return parts.join("");
}

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1000,
  kb: 1000,
  kib: 1024,
  m: 1e6,
  mb: 1e6,
  mib: 1024 ** 2,
  g: 1e9,
  gb: 1e9,
  gib: 1024 ** 3,
};

/** Parses "262144", "256KiB", "16 MiB", "1MB" into bytes; `undefined` when not a size. */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(text.trim());
  if (!m) return undefined;
  const [, amount, unitText = ""] = m;
  const unit = SIZE_UNITS[unitText.toLowerCase()];
  if (unit === undefined) return undefined;
  const n = Math.round(Number(amount) * unit);
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * Ollama's keep_alive as foreman sends it: a number of seconds, negative meaning forever. Numbers
 * are the one spelling every Ollama version parses the same way ("-1" as a string is rejected by
 * Go's time.ParseDuration).
 */
export function keepAliveSeconds(ms: number): number {
  return ms < 0 ? -1 : Math.round(ms / 1000);
}
