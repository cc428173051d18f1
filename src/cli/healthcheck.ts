// Container healthcheck: exits 0 when foreman's /healthz answers {"status":"ok"}, 1 otherwise.
// The Deno image has no curl, and `deno eval` always runs with every permission, so compose runs
// this file under `deno run --allow-net=<that address>` alone. No imports: nothing to fetch.

const url = Deno.args[0] ?? "http://127.0.0.1:8080/healthz";
try {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  const body = await res.json().catch(() => ({}));
  if (res.ok && body?.status === "ok") Deno.exit(0);
  console.error(`foreman healthcheck: ${url} answered ${res.status}`);
} catch (err) {
  console.error(`foreman healthcheck: ${url}: ${(err as Error).message}`);
}
Deno.exit(1);
