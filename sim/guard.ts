// Ollama's allowedHostsMiddleware and its CORS defaults (gin-contrib/cors): a Host that is not local
// or private, or an Origin that is not allowed, gets a 403 with an empty body.

function parseIPv4(s: string): number[] | undefined {
  const parts = s.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^(0|[1-9]\d{0,2})$/.test(p) || Number(p) > 255)) {
    return undefined;
  }
  return parts.map(Number);
}

function localIPv4([a, b = -1]: number[]): boolean {
  return a === 127 || a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) ||
    (a === 0 && b === 0);
}

export function allowedHost(hostHeader: string | null): boolean {
  if (!hostHeader) return true;
  let host = hostHeader.toLowerCase();
  const bracket = /^\[([^\]]+)\](?::\d*)?$/.exec(host)?.[1];
  const parts = host.split(":");
  if (bracket !== undefined) host = bracket;
  else if (parts.length === 2) host = parts[0]!;
  const v4 = parseIPv4(host);
  if (v4) return localIPv4(v4) && (v4[0] !== 0 || host === "0.0.0.0");
  if (host.includes(":")) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(host)?.[1];
    if (mapped !== undefined) {
      const m = parseIPv4(mapped);
      return m !== undefined && localIPv4(m);
    }
    return host === "::1" || host === "::" || /^f[cd][0-9a-f]{2}:/.test(host);
  }
  return host === "" || host === "localhost" || host.endsWith(".localhost") ||
    host.endsWith(".local") || host.endsWith(".internal");
}

const ORIGIN_PATTERNS: RegExp[] = [
  /^https?:\/\/(localhost|127\.0\.0\.1|0\.0\.0\.0)(:.*)?$/,
  /^(app|file|tauri|vscode-webview|vscode-file):\/\/.*$/,
  /^(chrome|safari|moz|ms-browser)-extension:\/\/.*$/,
];

export function allowedOrigin(origin: string | null, host: string | null): boolean {
  if (origin === null || origin === "") return true;
  if (host && (origin === `http://${host}` || origin === `https://${host}`)) return true;
  const o = origin.toLowerCase();
  return ORIGIN_PATTERNS.some((p) => p.test(o));
}
