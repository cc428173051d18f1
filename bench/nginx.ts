// nginx as a peer: the floor of a mature reverse proxy on this machine, run on loopback in front of
// the same simulator foreman fronts. One worker process (foreman is one event loop too), streams
// unbuffered (proxy_buffering off) and a keep-alive pool to the upstream, as a tuned deployment
// would have it. Installed from Debian's package when missing; when that cannot be done the bench
// says why and leaves the row out.

import { freePort } from "../harness/foreman.ts";
import type { SimProcess } from "./processes.ts";
import { stopChild, until } from "./processes.ts";

const dec = new TextDecoder();

/** `nginx -v`'s answer, or undefined when there is no nginx on PATH. */
async function nginxVersion(): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("nginx", { args: ["-v"], stdout: "null", stderr: "piped" })
      .output();
    return out.success ? dec.decode(out.stderr).trim().replace(/^nginx version: /, "") : undefined;
  } catch {
    return undefined;
  }
}

async function run(cmd: string, args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(cmd, {
    args,
    env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    signal: AbortSignal.timeout(300_000),
  }).output();
  return { ok: out.success, err: dec.decode(out.stderr).trim().split("\n").slice(-1)[0] ?? "" };
}

/**
 * The installed nginx's version, installing Debian's package first when it is missing (as root,
 * with a policy-rc.d that keeps the package from starting a service, as .ci/run does). Resolves with
 * `{ skipped }` naming the reason when there is still no nginx.
 */
export async function ensureNginx(
  note: (msg: string) => void,
): Promise<{ version: string } | { skipped: string }> {
  const have = await nginxVersion();
  if (have) return { version: have };
  if (Deno.uid() !== 0) return { skipped: "nginx is not installed and the bench is not root" };
  try {
    await Deno.stat("/usr/bin/apt-get");
  } catch {
    return { skipped: "nginx is not installed and there is no apt-get" };
  }
  note("nginx missing: apt-get install nginx");
  const policy = "/usr/sbin/policy-rc.d";
  let added = false;
  try {
    await Deno.stat(policy);
  } catch {
    await Deno.writeTextFile(policy, "#!/bin/sh\nexit 101\n", { mode: 0o755 });
    added = true;
  }
  try {
    const env = { DEBIAN_FRONTEND: "noninteractive" };
    const install = ["install", "-y", "-qq", "--no-install-recommends", "nginx"];
    let r = await run("apt-get", install, env);
    if (!r.ok) {
      // A fresh machine has no package lists yet.
      await run("apt-get", ["update", "-qq"], env);
      r = await run("apt-get", install, env);
    }
    const version = await nginxVersion();
    return version ? { version } : { skipped: `apt-get install nginx failed: ${r.err}` };
  } finally {
    if (added) await Deno.remove(policy).catch(() => {});
  }
}

function conf(dir: string, port: number, upstream: string): string {
  const target = new URL(upstream);
  return `
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path ${dir}/body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
    upstream target {
        server ${target.hostname}:${target.port};
        keepalive 64;
    }
    server {
        listen 127.0.0.1:${port};
        keepalive_requests 1000000;
        location / {
            proxy_pass http://target;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # Ollama answers 403 to a Host that is not local (the upstream's name is not).
            proxy_set_header Host ${target.host};
            proxy_buffering off;
            proxy_read_timeout 300s;
        }
    }
}
`;
}

/** Starts nginx in front of `upstream` and waits until a request passes through it. */
export async function startNginx(upstream: string): Promise<SimProcess> {
  const dir = await Deno.makeTempDir({ prefix: "foreman-bench-nginx-" });
  const port = freePort();
  await Deno.writeTextFile(`${dir}/nginx.conf`, conf(dir, port, upstream));
  const child = new Deno.Command("nginx", {
    args: ["-p", dir, "-c", `${dir}/nginx.conf`, "-e", "stderr"],
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    await stopChild(child, "SIGQUIT"); // QUIT: nginx's graceful stop
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    await until(
      async () => {
        try {
          const res = await fetch(`${url}/api/version`);
          await res.body?.cancel();
          return res.ok;
        } catch {
          return false;
        }
      },
      "nginx to pass a request through",
      { timeout: 10_000, interval: 20 },
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, pid: child.pid, stop };
}
