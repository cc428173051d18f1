// The deployment files, checked without a container engine: compose.yaml's services, healthchecks,
// ports, env and volumes, and the nginx in front (its config runs for real in
// tests/reliability/slow_clients_test.ts); the Dockerfile's flags against permissionFlags for the container's
// configuration; what the image contains; and `deno task compile` without a network.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { loadConfig } from "../src/config.ts";
import { permissionFlags } from "../src/permissions.ts";
import { compileArgs, runtimeUnavailable } from "../scripts/compile.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const read = (path: string) => Deno.readTextFileSync(`${ROOT}/${path}`);

interface Service {
  image?: string;
  profiles?: string[];
  command?: string[];
  secrets?: string[];
  build?: unknown;
  environment?: Record<string, string>;
  env_file?: string[];
  ports?: string[];
  volumes?: string[];
  depends_on?: string[] | Record<string, { condition: string }>;
  healthcheck?: { test: string[]; interval?: string };
}

/** The services compose.yaml defines; the tests below check each one's settings. */
type ServiceName = "ollama" | "foreman" | "proxy" | "prometheus" | "grafana";

const compose = parseYaml(read("compose.yaml")) as {
  services: Record<ServiceName, Service>;
  volumes: Record<string, unknown>;
  secrets?: Record<string, { file?: string; environment?: string }>;
};

/** The services a plain `docker compose up` starts (those in no profile). */
const always = Object.fromEntries(
  Object.entries(compose.services).filter(([, service]) => !service.profiles),
) as Partial<Record<ServiceName, Service>>;

/** The Dockerfile with continuation lines joined. */
const dockerfile = read("Dockerfile").replace(/\\\n\s*/g, " ");

function instruction(name: string): string[] {
  return dockerfile.split("\n").filter((l) => l.startsWith(`${name} `)).map((l) =>
    l.slice(name.length + 1).trim()
  );
}

/** ENV lines as a map (KEY=value pairs, space-separated). */
function dockerEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of instruction("ENV")) {
    for (const pair of line.split(/\s+/)) {
      const i = pair.indexOf("=");
      env[pair.slice(0, i)] = pair.slice(i + 1);
    }
  }
  return env;
}

const entrypoint: string[] = JSON.parse(instruction("ENTRYPOINT")[0]!);

Deno.test("compose runs ollama, foreman and nginx in front, and publishes only the proxy's port", () => {
  assert.deepEqual(Object.keys(always).sort(), ["foreman", "ollama", "proxy"]);
  const { ollama, foreman, proxy } = always;
  assert.ok(ollama && foreman && proxy);
  assert.match(ollama.image!, /^ollama\/ollama(:|$)/);
  assert.equal(ollama.environment?.OLLAMA_MAX_LOADED_MODELS, "2");
  assert.equal(ollama.ports, undefined);
  assert.deepEqual(ollama.volumes, ["ollama-models:/root/.ollama"]);
  assert.equal(foreman.build, ".");
  assert.equal(foreman.image, undefined);
  assert.deepEqual(foreman.depends_on, ["ollama"]);
  assert.equal(foreman.ports, undefined);
  assert.deepEqual(foreman.volumes, ["foreman-data:/data"]);
  assert.match(proxy.image!, /^nginx:\d+\.\d+/);
  assert.deepEqual(proxy.ports, ["8080:8080"]);
  assert.deepEqual(proxy.depends_on, { foreman: { condition: "service_healthy" } });
  for (const volume of ["foreman-data", "ollama-models"]) assert.ok(volume in compose.volumes);
});

Deno.test("compose takes foreman's token from an env file and points it at the ollama service", () => {
  const { foreman } = compose.services;
  assert.deepEqual(foreman.env_file, ["foreman.env"]);
  assert.equal(foreman.environment?.FOREMAN_TOKEN, undefined, "no token in compose.yaml");
  assert.equal(foreman.environment?.FOREMAN_OLLAMA_URL, "http://ollama:11434");
  assert.equal(foreman.environment?.FOREMAN_ADDR, "0.0.0.0:8080");
  // The compose settings are the ones the image's fixed flags were computed for.
  for (const [name, value] of Object.entries(foreman.environment ?? {})) {
    assert.equal(dockerEnv()[name], value, `${name} in compose.yaml and the Dockerfile`);
  }
  const example = read("foreman.env.example");
  assert.match(example, /^FOREMAN_TOKEN=\S+$/m);
});

Deno.test("the healthcheck fetches /healthz with network access to foreman alone", () => {
  const test = compose.services.foreman.healthcheck!.test;
  assert.equal(test[0], "CMD");
  assert.deepEqual(test.slice(1, 5), ["deno", "run", "--no-config", "--allow-net=127.0.0.1:8080"]);
  assert.equal(test.filter((a) => a.startsWith("-A") || a.startsWith("--allow")).length, 1);
  const script = test[5];
  assert.equal(script, "/app/src/cli/healthcheck.ts");
  assert.ok(Deno.statSync(`${ROOT}/src/cli/healthcheck.ts`).isFile);
  assert.equal(test[6], "http://127.0.0.1:8080/healthz");
});

Deno.test("the proxy runs deploy/nginx/nginx.conf in front of foreman's address and checks health through it", () => {
  const { proxy, foreman } = compose.services;
  assert.deepEqual(proxy.volumes, ["./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro"]);
  const conf = read("deploy/nginx/nginx.conf");
  const published = proxy.ports![0]!.split(":").at(-1);
  assert.match(conf, new RegExp(`^\\s*listen ${published};$`, "m"));
  // foreman listens on FOREMAN_ADDR; the proxy reaches it by service name on that port.
  const port = foreman.environment!.FOREMAN_ADDR!.split(":").at(-1);
  assert.match(conf, new RegExp(`^\\s*set \\$foreman foreman:${port};$`, "m"));
  assert.match(conf, /^\s*proxy_pass http:\/\/\$foreman;$/m);
  // The bounds docs/deploy.md and docs/reliability.md state.
  for (
    const line of [
      "client_header_timeout 10s;",
      "client_body_timeout 30s;",
      "limit_conn foreman 512;",
      "worker_connections 4096;",
      "client_max_body_size 16m;",
      "proxy_buffering off;",
      "proxy_read_timeout 24h;",
    ]
  ) {
    assert.match(conf, new RegExp(`^\\s*${line.replace(/[$.]/g, "\\$&")}$`, "m"), line);
  }
  assert.deepEqual(proxy.healthcheck!.test, [
    "CMD",
    "wget",
    "-q",
    "-O",
    "/dev/null",
    `http://127.0.0.1:${published}/healthz`,
  ]);
});

/** The body of the nginx block that starts with `head` (e.g. `location @busy`), braces matched. */
function nginxBlock(conf: string, head: string): string {
  const start = conf.indexOf(`${head} {`);
  assert.ok(start >= 0, `deploy/nginx/nginx.conf has "${head} {"`);
  let depth = 0;
  for (let i = conf.indexOf("{", start); i < conf.length; i++) {
    if (conf[i] === "{") depth++;
    if (conf[i] === "}" && --depth === 0) return conf.slice(conf.indexOf("{", start) + 1, i);
  }
  throw new Error(`${head} is not closed`);
}

/** The entries (pattern → value) of the map `map <source> <variable>`, in order, but its default. */
function nginxMap(conf: string, sourceAndVariable: string): [string, string][] {
  const body = nginxBlock(conf, `map ${sourceAndVariable}`);
  return body.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("default"))
    .map((l) => {
      const m = /^("[^"]*"|\S+)\s+(.*);$/.exec(l)!;
      return [m[1]!.replace(/^"(.*)"$/, "$1"), m[2]!];
    });
}

/** Which entry of an nginx map of regular expressions matches `value` first, or undefined. */
function mapValue(entries: [string, string][], value: string): string | undefined {
  for (const [pattern, result] of entries) {
    assert.ok(pattern.startsWith("~"), pattern);
    const insensitive = pattern.startsWith("~*");
    if (new RegExp(pattern.slice(insensitive ? 2 : 1), insensitive ? "i" : "").test(value)) {
      return result;
    }
  }
  return undefined;
}

Deno.test("the proxy answers its own errors on /v1 in OpenAI's shape and elsewhere in Ollama's", () => {
  const conf = read("deploy/nginx/nginx.conf");
  // Under /v1 exactly as foreman's router decides it.
  const openai = nginxMap(conf, "$uri $foreman_openai");
  for (const path of ["/v1", "/v1/", "/v1/models", "/v1/chat/completions", "/v1/nothing/here"]) {
    assert.equal(mapValue(openai, path), "1", path);
  }
  for (const path of ["/", "/v10/models", "/api/tags", "/jobs", "/jobs/v1/", "/healthz"]) {
    assert.equal(mapValue(openai, path), undefined, path);
  }
  const pages = [...conf.matchAll(/^\s*error_page ([\d ]+) = (@\w+);$/gm)];
  assert.deepEqual(pages.flatMap((m) => m[1]!.split(" ")).sort(), [
    "400",
    "413",
    "502",
    "503",
    "504",
  ]);
  for (const [, , name] of pages) {
    const block = nginxBlock(conf, `location ${name}`);
    const returns = (text: string) =>
      [...text.matchAll(/return (\d{3}) '(.*)\\n';/g)].map((m) => ({
        status: Number(m[1]),
        body: JSON.parse(m[2]!),
      }));
    const [v1, ...more] = returns(nginxBlock(block, "if ($foreman_openai)"));
    assert.ok(v1 && more.length === 0, `${name}: one answer for /v1`);
    // The answer outside any `if` is the last in the block: Ollama's shape.
    const native = returns(block).at(-1)!;
    assert.equal(typeof native.body.error, "string", name);
    assert.equal(v1.status, native.status, name);
    assert.deepEqual(v1.body, {
      error: {
        message: native.body.error,
        type: v1.status >= 500 ? "api_error" : "invalid_request_error",
        param: null,
        code: null,
      },
    }, name);
  }
});

Deno.test("the proxy caps watchers of jobs apart from requests, at FOREMAN_MAX_WATCHERS", () => {
  const conf = read("deploy/nginx/nginx.conf");
  const env: Record<string, string> = { ...dockerEnv(), FOREMAN_TOKEN: "from-foreman.env" };
  const config = loadConfig({
    env: (name) => env[name],
    readFile: (path) => {
      throw new Deno.errors.NotFound(`${path} is not in the image`);
    },
  });
  const cap = (zone: string) => {
    const m = new RegExp(`^\\s*limit_conn ${zone} (\\d+);$`, "m").exec(conf);
    assert.ok(m, `limit_conn ${zone}`);
    return Number(m[1]);
  };
  assert.equal(cap("foreman"), 512);
  assert.equal(cap("watchers"), config.maxWatchers);
  // Each request is counted in one zone: nginx skips a request whose key is empty.
  assert.match(conf, /^\s*limit_conn_zone \$foreman_request_key zone=foreman:1m;$/m);
  assert.match(conf, /^\s*limit_conn_zone \$foreman_watcher_key zone=watchers:1m;$/m);
  const keys = (variable: string) => {
    const body = nginxBlock(conf, `map $foreman_watcher ${variable}`);
    return Object.fromEntries(
      body.trim().split("\n").map((l) => l.trim().replace(/;$/, "").split(/\s+/)),
    );
  };
  assert.deepEqual(keys("$foreman_request_key"), { '""': "$server_name", default: '""' });
  assert.deepEqual(keys("$foreman_watcher_key"), { '""': '""', default: "$server_name" });
  // Who is a watcher: event streams, and GET /jobs/{id} with ?wait= or Prefer: wait=.
  const paths = nginxMap(conf, "$uri $foreman_job_path");
  const prefer = nginxMap(conf, "$http_prefer $foreman_prefer_wait");
  const watcher = nginxMap(
    conf,
    '"$request_method $foreman_job_path $arg_wait$foreman_prefer_wait" $foreman_watcher',
  );
  const isWatcher = (method: string, path: string, wait = "", preferHeader = "") =>
    mapValue(
      watcher,
      `${method} ${mapValue(paths, path) ?? ""} ${wait}${mapValue(prefer, preferHeader) ?? ""}`,
    ) === "1";
  const id = "01K0000000000000000000000A";
  assert.ok(isWatcher("GET", `/jobs/${id}/events`));
  assert.ok(isWatcher("GET", `/jobs/${id}`, "30s"));
  assert.ok(isWatcher("GET", `/jobs/${id}`, "", "wait=30"));
  assert.ok(isWatcher("GET", `/jobs/${id}`, "", "respond-async, Wait = 5"));
  assert.ok(!isWatcher("GET", `/jobs/${id}`));
  assert.ok(!isWatcher("GET", `/jobs/${id}`, "", "return=minimal"));
  assert.ok(!isWatcher("DELETE", `/jobs/${id}`, "30s"));
  assert.ok(!isWatcher("GET", "/jobs", "30s"));
  assert.ok(!isWatcher("GET", `/jobs/${id}/artifacts/completion`, "30s"));
  assert.ok(!isWatcher("POST", "/api/chat"));
  // A proxied request holds two connections (the client's and foreman's): both caps fit.
  const connections = Number(/^\s*worker_connections (\d+);$/m.exec(conf)![1]);
  assert.ok(2 * (cap("foreman") + cap("watchers")) < connections, `${connections} connections`);
});

Deno.test("the Dockerfile runs the daemon under exactly permissionFlags for its configuration", () => {
  // The image's ENV plus the env file, which must hold a token for a non-loopback address.
  const env: Record<string, string> = { ...dockerEnv(), FOREMAN_TOKEN: "from-foreman.env" };
  const config = loadConfig({
    env: (name) => env[name],
    readFile: (path) => {
      throw new Deno.errors.NotFound(`${path} is not in the image`);
    },
  });
  const expected = permissionFlags(config, "/app");
  assert.deepEqual(expected, [
    "--allow-net=0.0.0.0:8080,ollama:11434",
    "--allow-read=/data,/app/foreman.toml",
    "--allow-write=/data",
    "--allow-env=FOREMAN_*",
    "--no-prompt",
    "--unstable-no-legacy-abort",
  ]);
  assert.deepEqual(entrypoint, ["deno", "run", ...expected, "main.ts"]);
  assert.deepEqual(JSON.parse(instruction("CMD")[0]!), ["serve"]);
  assert.deepEqual(instruction("WORKDIR"), ["/app"]);
  assert.deepEqual(instruction("USER"), ["deno"]);
});

Deno.test("the Dockerfile builds on the official Deno image and caches dependencies first", () => {
  const version = /^ARG DENO_VERSION=(\S+)$/m.exec(dockerfile)?.[1];
  // The image's Deno is the minor release the project is tested on (2.9.x).
  const minor = (v: string) => v.split(".").slice(0, 2).join(".");
  assert.equal(minor(version ?? ""), minor(Deno.version.deno));
  assert.deepEqual(instruction("FROM"), ["denoland/deno:${DENO_VERSION}"]);
  const steps = dockerfile.split("\n").filter((l) => /^(COPY|RUN) /.test(l));
  const install = steps.findIndex((l) => l.startsWith("RUN deno install --frozen"));
  const sources = steps.findIndex((l) => l.includes(" src "));
  assert.ok(steps[install - 1]!.endsWith("deno.json deno.lock ./"), "only the manifest before");
  assert.ok(install >= 0 && install < sources, "dependencies are cached before sources");
});

Deno.test("the image holds every module the daemon and the healthcheck load", async () => {
  // .dockerignore admits only these; the module graph must stay inside them.
  const admitted = read(".dockerignore").split("\n").filter((l) => l.startsWith("!"))
    .map((l) => l.slice(1));
  assert.deepEqual(admitted.sort(), ["deno.json", "deno.lock", "main.ts", "src/"]);
  for (const entry of ["main.ts", "src/cli/healthcheck.ts"]) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", entry],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    const graph = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      modules: { specifier: string }[];
    };
    const local = graph.modules.map((m) => m.specifier).filter((s) => s.startsWith("file://"))
      .map((s) => fileURLToPath(s).slice(ROOT.length));
    assert.ok(local.length > 0);
    for (const path of local) {
      assert.ok(path === "main.ts" || path.startsWith("src/"), `${path} is not in the image`);
    }
  }
});

Deno.test("deno task compile bakes permissionFlags into the executable", () => {
  const plan = compileArgs(
    ["--addr", "127.0.0.1:8181", "--db", "/srv/foreman/foreman.db", "-o", "/tmp/f"],
    () => undefined,
  );
  const config = loadConfig({
    flags: { addr: "127.0.0.1:8181", db: "/srv/foreman/foreman.db" },
    env: () => undefined,
  });
  const flags = permissionFlags(config);
  assert.equal(plan.denoArgs[0], "compile");
  const at = plan.denoArgs.indexOf(flags[0]!);
  assert.deepEqual(plan.denoArgs.slice(at, at + flags.length), flags);
  assert.equal(plan.denoArgs.filter((a) => /^(-A|--allow-)/.test(a)).length, 4);
  assert.equal(plan.denoArgs.at(-1), fileURLToPath(new URL("../main.ts", import.meta.url)));
  assert.equal(plan.denoArgs.at(-2), "/tmp/f");
  assert.equal(plan.output, "/tmp/f");
});

Deno.test("deno task compile says in one line when it cannot fetch Deno's runtime", async () => {
  const dir = await Deno.makeTempDir({ prefix: "foreman-compile-" });
  // A proxy that refuses connections stands in for a machine without a network.
  const refused = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const proxy = `http://127.0.0.1:${(refused.addr as Deno.NetAddr).port}`;
  refused.close();
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "-q", "compile", "--output", `${dir}/foreman`],
      cwd: ROOT,
      env: { HTTPS_PROXY: proxy, HTTP_PROXY: proxy, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    if (out.success) {
      // The runtime was already cached: then the executable exists.
      assert.match(stdout, /^compile: wrote /);
      assert.ok(Deno.statSync(`${dir}/foreman`).isFile);
      return;
    }
    assert.equal(out.code, 1);
    assert.equal(
      stderr,
      "compile: deno compile could not download Deno's runtime (denort) from dl.deno.land; " +
        "it needs a network once (or DENORT_BIN pointing at a local denort binary)\n",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a runtime download failure is told apart from other compile errors", () => {
  assert.ok(runtimeUnavailable(
    "error: Writing deno compile executable to temporary file\n\nCaused by:\n" +
      "    0: Setting up base binary.\n    1: error sending request for url " +
      "(https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip): client error " +
      "(Connect): dns error",
  ));
  assert.ok(!runtimeUnavailable("error: TS2322 [ERROR]: Type 'string' is not assignable"));
});

// ---- the monitoring profile ----------------------------------------------------------------------

/** Paths in a parsed config where a secret sits inline instead of in a file. */
function inlineSecrets(value: unknown, path = ""): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => inlineSecrets(v, `${path}[${i}]`));
  if (value === null || typeof value !== "object") return [];
  const found: string[] = [];
  for (const [key, v] of Object.entries(value)) {
    const here = path ? `${path}.${key}` : key;
    if (["credentials", "bearer_token", "password", "basic_auth", "token"].includes(key)) {
      found.push(here);
    }
    found.push(...inlineSecrets(v, here));
  }
  return found;
}

const promConfig = parseYaml(read("deploy/prometheus/prometheus.yml")) as {
  rule_files: string[];
  scrape_configs: {
    job_name: string;
    authorization?: { type?: string; credentials_file?: string };
    static_configs: { targets: string[] }[];
  }[];
};

Deno.test("the monitoring profile starts Prometheus and Grafana only on demand, on loopback", () => {
  const { prometheus, grafana } = compose.services;
  for (const [name, service] of Object.entries({ prometheus, grafana })) {
    assert.deepEqual(service.profiles, ["monitoring"], name);
    assert.match(service.image!, /:v?\d+\.\d+\.\d+$/, `${name} image pinned to a release`);
    assert.equal(service.build, undefined);
    for (const port of service.ports ?? []) assert.match(port, /^127\.0\.0\.1:/, `${name} ${port}`);
    assert.ok(service.environment?.FOREMAN_TOKEN === undefined);
  }
  assert.match(prometheus.image!, /^prom\/prometheus:/);
  assert.match(grafana.image!, /^grafana\/grafana:/);
  assert.deepEqual(prometheus.depends_on, ["foreman"]);
  assert.ok(prometheus.command!.includes("--config.file=/etc/prometheus/prometheus.yml"));
  assert.ok(prometheus.volumes!.includes("./deploy/prometheus:/etc/prometheus:ro"));
  // The rule file Prometheus loads is the one promtool tests, in the mounted directory.
  assert.deepEqual(promConfig.rule_files, ["/etc/prometheus/foreman.rules.yml"]);
  assert.ok(Deno.statSync(`${ROOT}/deploy/prometheus/foreman.rules.yml`).isFile);
});

Deno.test("Prometheus scrapes foreman with a token read from a file, never written inline", () => {
  const { prometheus } = compose.services;
  assert.deepEqual(prometheus.secrets, ["foreman_token"]);
  const secret = compose.secrets?.foreman_token;
  assert.ok(secret?.file, "the token comes from a file on the host");
  assert.equal(secret.environment, undefined);
  // The file is kept out of version control and out of the image.
  const file = secret.file.replace(/^\.\//, "");
  assert.match(read(".gitignore"), new RegExp(`^/?${file.replaceAll(".", "\\.")}$`, "m"));
  assert.ok(!read(".dockerignore").includes(`!${file}`));

  assert.deepEqual(promConfig.scrape_configs.map((c) => c.job_name), ["foreman"]);
  const [job] = promConfig.scrape_configs;
  assert.deepEqual(job!.authorization, {
    type: "Bearer",
    credentials_file: "/run/secrets/foreman_token",
  });
  // It scrapes the compose service on the port foreman listens on.
  const port = compose.services.foreman.environment!.FOREMAN_ADDR!.split(":").at(-1);
  assert.deepEqual(job!.static_configs, [{ targets: [`foreman:${port}`] }]);
  assert.deepEqual(inlineSecrets(promConfig), []);
  assert.deepEqual(inlineSecrets(compose), []);
});

Deno.test("an inline token in a scrape config is caught", () => {
  const leaky = structuredClone(promConfig) as unknown as {
    scrape_configs: Record<string, unknown>[];
  };
  leaky.scrape_configs[0]!.authorization = { type: "Bearer", credentials: "t0ken" };
  leaky.scrape_configs.push({ job_name: "old", bearer_token: "t0ken" });
  assert.deepEqual(inlineSecrets(leaky), [
    "scrape_configs[0].authorization.credentials",
    "scrape_configs[1].bearer_token",
  ]);
});

Deno.test("Grafana gets its data source, the dashboard and its admin password from files", () => {
  const { grafana } = compose.services;
  assert.deepEqual(grafana.depends_on, ["prometheus"]);
  assert.deepEqual(grafana.secrets, ["grafana_admin_password"]);
  assert.equal(
    grafana.environment?.GF_SECURITY_ADMIN_PASSWORD__FILE,
    "/run/secrets/grafana_admin_password",
  );
  assert.ok(compose.secrets?.grafana_admin_password?.file);
  assert.ok(
    grafana.volumes!.includes("./deploy/grafana/provisioning:/etc/grafana/provisioning:ro"),
  );
  const datasources = parseYaml(read("deploy/grafana/provisioning/datasources/prometheus.yml")) as {
    datasources: { type: string; url: string }[];
  };
  assert.deepEqual(datasources.datasources.map((d) => [d.type, d.url]), [
    ["prometheus", "http://prometheus:9090"],
  ]);
  const providers = parseYaml(read("deploy/grafana/provisioning/dashboards/foreman.yml")) as {
    providers: { options: { path: string } }[];
  };
  const dashboardMount = grafana.volumes!.find((v) =>
    v.startsWith("./deploy/grafana/foreman.json:")
  );
  assert.equal(
    dashboardMount,
    `./deploy/grafana/foreman.json:${providers.providers[0]!.options.path}/foreman.json:ro`,
  );
});
