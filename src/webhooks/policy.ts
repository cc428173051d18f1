// Where webhooks may go: only hosts on FOREMAN_WEBHOOK_HOSTS, written as host (any port) or
// host:port (that port only). Plain http is allowed because the operator listed the host on
// purpose (a receiver on the same machine or network); everything else is refused. Checked at
// submit time, so a refused URL never reaches the queue.

export function allowedPort(url: URL): number {
  if (url.port) return Number(url.port);
  return url.protocol === "https:" ? 443 : 80;
}

/** Returns why `raw` may not receive webhooks, or undefined when it may. */
export function webhookUrlProblem(raw: string, hosts: readonly string[]): string | undefined {
  const url = URL.parse(raw);
  if (!url) return `state_webhook_url is not a URL: '${raw.slice(0, 200)}'`;
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return "state_webhook_url must be http or https";
  }
  if (url.username || url.password) return "state_webhook_url must not carry credentials";
  const host = url.hostname.toLowerCase();
  const port = allowedPort(url);
  const listed = hosts.some((entry) => {
    const [h, p] = splitHostPort(entry);
    if (h !== host) return false;
    return p === undefined || p === port;
  });
  if (!listed) {
    return `state_webhook_url host ${url.host} is not allowed: add it to FOREMAN_WEBHOOK_HOSTS ` +
      `(host or host:port)`;
  }
  return undefined;
}

/** "example.com:8443" → ["example.com", 8443]; "[::1]:9000" → ["::1"...]; bare host → port undefined. */
export function splitHostPort(entry: string): [string, number | undefined] {
  const e = entry.trim().toLowerCase();
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(e);
  if (v6) return [`[${v6[1]}]`, v6[2] ? Number(v6[2]) : undefined];
  const i = e.lastIndexOf(":");
  if (i > 0 && /^\d+$/.test(e.slice(i + 1))) return [e.slice(0, i), Number(e.slice(i + 1))];
  return [e, undefined];
}
