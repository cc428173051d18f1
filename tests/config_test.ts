import { markdown } from "../scripts/settings-docs.ts";
import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../src/config.ts";
import { flagName, secretFileVar, SETTINGS } from "../src/settings.ts";
import { formatDuration, keepAliveSeconds, parseDuration, parseSize } from "../src/units.ts";

const noFile = (path: string): string => {
  throw new Deno.errors.NotFound(path);
};
const envOf = (vars: Record<string, string>) => (name: string) => vars[name];

Deno.test("defaults apply when nothing is configured", () => {
  const c = loadConfig({ env: envOf({}), readFile: noFile });
  assert.deepEqual(c.addr, { hostname: "127.0.0.1", port: 8080 });
  assert.equal(c.ollamaUrl, "http://127.0.0.1:11434");
  assert.equal(c.db, "./data/foreman.db");
  assert.equal(c.pollInterval, 30_000);
  assert.equal(c.keepAlive, -1000);
  assert.equal(c.maxAttempts, 3);
  assert.equal(c.jobTtl, 24 * 3_600_000);
  assert.equal(c.maxQueue, 10_000);
  assert.equal(c.maxWait, 0);
  assert.equal(c.inlineLimit, 262_144);
  assert.equal(c.maxBody, 16 * 1024 * 1024);
  assert.equal(c.maxMetadata, 64 * 1024);
  assert.deepEqual(c.tokens, []);
  assert.equal(c.configLoaded, false);
});

Deno.test("later sources win: defaults < toml < env < flags", () => {
  const toml = `
[server]
addr = "127.0.0.1:9000"
[queue]
max_attempts = 5
max_queue = 7
[residency]
embed_model = "nomic"
`;
  const c = loadConfig({
    env: envOf({ FOREMAN_MAX_ATTEMPTS: "6", FOREMAN_MAX_QUEUE: "8" }),
    flags: { "max-queue": "9" },
    readFile: () => toml,
  });
  assert.equal(c.addr.port, 9000);
  assert.equal(c.maxAttempts, 6);
  assert.equal(c.maxQueue, 9);
  assert.equal(c.embedModel, "nomic");
  assert.equal(c.configLoaded, true);
});

Deno.test("a bad value names the setting, the source and the value in one line", () => {
  const cases: [Record<string, string>, Record<string, string>, RegExp][] = [
    [
      { FOREMAN_JOB_TTL: "2x" },
      {},
      /^Invalid FOREMAN_JOB_TTL from FOREMAN_JOB_TTL: '2x' is not a duration/,
    ],
    [{}, { "max-attempts": "zero" }, /^Invalid FOREMAN_MAX_ATTEMPTS from --max-attempts: 'zero'/],
    [{ FOREMAN_OLLAMA_URL: "ftp://x" }, {}, /FOREMAN_OLLAMA_URL .*must be http/],
    [{ FOREMAN_ADDR: "localhost" }, {}, /FOREMAN_ADDR .*'localhost' is not host:port/],
    [{ FOREMAN_ALLOW_UNAUTHENTICATED: "maybe" }, {}, /not a boolean/],
  ];
  for (const [env, flags, re] of cases) {
    assert.throws(() => loadConfig({ env: envOf(env), flags, readFile: noFile }), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, re);
      assert.ok(!e.message.includes("\n"), "one line");
      return true;
    });
  }
});

Deno.test("a bad value in foreman.toml names the file and key", () => {
  assert.throws(
    () => loadConfig({ env: envOf({}), readFile: () => `[queue]\njob_ttl = "soon"\n` }),
    /Invalid FOREMAN_JOB_TTL from \.\/foreman\.toml queue\.job_ttl: 'soon'/,
  );
  assert.throws(
    () => loadConfig({ env: envOf({}), readFile: () => `[server]\nadr = "x"\n` }),
    /Unknown setting 'server\.adr'/,
  );
});

Deno.test("secret values are never echoed in errors", () => {
  // tokens are lists and always valid; a secret file that cannot be read is reported by path only
  assert.throws(
    () => loadConfig({ env: envOf({ FOREMAN_TOKEN_FILE: "/nope/token" }), readFile: noFile }),
    /Cannot read FOREMAN_TOKEN_FILE \/nope\/token/,
  );
});

Deno.test("secrets can come from files and tokens split on commas for rotation", () => {
  const files: Record<string, string> = { "/run/tok": "new-token , old-token\n" };
  const c = loadConfig({
    env: envOf({ FOREMAN_TOKEN_FILE: "/run/tok" }),
    readFile: (p) => files[p] ?? noFile(p),
  });
  assert.deepEqual(c.tokens, ["new-token", "old-token"]);
  assert.deepEqual(c.secretFiles, ["/run/tok"]);
});

Deno.test("no token and a non-loopback address refuses to start unless explicitly allowed", () => {
  assert.throws(
    () => loadConfig({ env: envOf({ FOREMAN_ADDR: "0.0.0.0:8080" }), readFile: noFile }),
    /Refusing to listen on 0\.0\.0\.0:8080 without FOREMAN_TOKEN/,
  );
  const open = loadConfig({
    env: envOf({ FOREMAN_ADDR: "0.0.0.0:8080", FOREMAN_ALLOW_UNAUTHENTICATED: "1" }),
    readFile: noFile,
  });
  assert.equal(open.allowUnauthenticated, true);
  const withToken = loadConfig({
    env: envOf({ FOREMAN_ADDR: "0.0.0.0:8080", FOREMAN_TOKEN: "t0ken" }),
    readFile: noFile,
  });
  assert.deepEqual(withToken.tokens, ["t0ken"]);
});

Deno.test("each setting refuses the values its row rules out and takes the rest", () => {
  const load = (vars: Record<string, string>) => loadConfig({ env: envOf(vars), readFile: noFile });
  const refused: [string, string, RegExp][] = [
    ["FOREMAN_MAX_ATTEMPTS", "0", /must be at least 1/],
    ["FOREMAN_MAX_QUEUE", "0", /must be at least 1/],
    ["FOREMAN_WEBHOOK_MAX_ATTEMPTS", "0", /must be at least 1/],
    ["FOREMAN_MAX_ANSWER", "0", /must be larger than zero/],
    ["FOREMAN_MAX_METADATA", "0", /must be larger than zero/],
    ["FOREMAN_POLL_INTERVAL", "0", /must be longer than zero/],
    ["FOREMAN_TARGET_TIMEOUT", "0s", /must be longer than zero/],
    ["FOREMAN_JOB_TTL", "0", /must be longer than zero/],
    ["FOREMAN_BODY_TIMEOUT", "0", /must be longer than zero/],
    ["FOREMAN_MAX_WAIT", "-1", /must not be negative/],
    ["FOREMAN_RETRY_BASE", "-5s", /must not be negative/],
    ["FOREMAN_WEBHOOK_SECRET", "short", /FOREMAN_WEBHOOK_SECRET .*\(redacted\) is 5 bytes/],
  ];
  for (const [name, value, re] of refused) {
    assert.throws(() => load({ [name]: value }), re, `${name}=${value}`);
  }
  const c = load({
    FOREMAN_KEEP_ALIVE: "-1",
    FOREMAN_MAX_WAIT: "0",
    FOREMAN_MAX_BODY: "0",
    FOREMAN_INLINE_LIMIT: "0",
    FOREMAN_TOKEN: " new , old ,",
    FOREMAN_WEBHOOK_SECRET: "",
  });
  assert.deepEqual(
    [c.keepAlive, c.maxWait, c.maxBody, c.inlineLimit, c.tokens, c.webhookSecret],
    [-1000, 0, 0, 0, ["new", "old"], ""],
  );
});

Deno.test("every setting is documented in foreman.toml and the README with its env name", async () => {
  const toml = await Deno.readTextFile(new URL("../foreman.toml", import.meta.url));
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  for (const s of SETTINGS) {
    assert.ok(toml.includes(s.env), `foreman.toml mentions ${s.env}`);
    assert.ok(toml.includes(s.toml.split(".")[1]!), `foreman.toml has key ${s.toml}`);
    assert.ok(readme.includes(s.env), `README mentions ${s.env}`);
    assert.ok(readme.includes(`--${flagName(s)}`), `README mentions --${flagName(s)}`);
  }
  // The shipped file must load as it is.
  const c = loadConfig({ env: envOf({}), readFile: () => toml });
  assert.equal(c.addr.port, 8080);
});

/**
 * The cells of a Markdown table row as GitHub renders them: every `|` not escaped as `\|` ends a
 * cell, inside a code span too, so an unescaped pipe in a cell silently adds a column.
 */
function tableCells(row: string): string[] {
  const inner = row.trim().replace(/^\|/, "").replace(/(?<!\\)\|$/, "");
  return inner.split(/(?<!\\)\|/).map((cell) => cell.trim().replaceAll("\\|", "|"));
}

/** The first table under `## <heading>` in a Markdown document, as rows of cells. */
function tableUnder(markdown: string, heading: string): string[][] {
  const lines = markdown.split("\n");
  const start = lines.indexOf(`## ${heading}`);
  assert.ok(start >= 0, `a "## ${heading}" section`);
  const next = lines.findIndex((l, i) => i > start && l.startsWith("## "));
  const rest = lines.slice(start + 1, next < 0 ? undefined : next);
  const first = rest.findIndex((l) => l.startsWith("|"));
  assert.ok(first >= 0, `a table under "## ${heading}"`);
  const end = rest.findIndex((l, i) => i > first && !l.startsWith("|"));
  return rest.slice(first, end < 0 ? undefined : end).map(tableCells);
}

Deno.test("a table cell splits on every unescaped pipe, as GitHub renders it", () => {
  assert.deepEqual(tableCells("| `a` | debug|info |"), ["`a`", "debug", "info"]);
  assert.deepEqual(tableCells("| `a` | debug\\|info |"), ["`a`", "debug|info"]);
  assert.deepEqual(tableCells("| `x|y` | b |"), ["`x", "y`", "b"]);
});

Deno.test("the README's configuration table has one well-formed row per setting, as in src/settings.ts", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const [header = [], delimiter = [], ...rows] = tableUnder(readme, "Configuration");
  assert.deepEqual(header, ["TOML key", "env", "flag", "default", "meaning"]);
  for (const row of [delimiter, ...rows]) {
    assert.equal(row.length, header.length, `cells in the row ${row[0]}`);
  }
  assert.ok(delimiter.every((cell) => /^:?-+:?$/.test(cell)), "the second row is the delimiter");
  const unseen = new Map(SETTINGS.map((s) => [`\`${s.toml}\``, s]));
  for (const [key = "", env, flag, def, meaning] of rows) {
    // A row that is no setting is prose that slipped into the table, or a setting since removed.
    const s = unseen.get(key);
    assert.ok(s, `the row ${key} names a setting of SETTINGS, once`);
    unseen.delete(key);
    assert.equal(env, `\`${s.env}\``, `${s.toml}: env`);
    assert.equal(flag, `\`--${flagName(s)}\``, `${s.toml}: flag`);
    assert.equal(def, s.default === "" ? "empty" : `\`${s.default}\``, `${s.toml}: default`);
    // The meaning is the setting's help text, which foreman.toml's comments also carry.
    assert.equal(meaning, s.help, `${s.toml}: meaning`);
  }
  assert.deepEqual([...unseen.keys()], [], "settings without a row");
  // The secrets' file variants are named below the table.
  for (const s of SETTINGS) {
    const fileVar = secretFileVar(s);
    if (fileVar) assert.ok(readme.includes(`\`${fileVar}\``), `README names ${fileVar}`);
  }
});

Deno.test("durations and sizes parse like Go and Ollama", () => {
  assert.equal(parseDuration("30s"), 30_000);
  assert.equal(parseDuration("1h30m"), 5_400_000);
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("-1"), -1000);
  assert.equal(parseDuration("0"), 0);
  assert.equal(parseDuration("30"), undefined);
  assert.equal(parseDuration("soon"), undefined);
  assert.equal(parseSize("16MiB"), 16 * 1024 * 1024);
  assert.equal(parseSize("262144"), 262_144);
  assert.equal(parseSize("1 kb"), 1000);
  assert.equal(parseSize("lots"), undefined);
  assert.equal(keepAliveSeconds(-1000), -1);
  assert.equal(keepAliveSeconds(300_000), 300);
  assert.equal(formatDuration(5_400_000), "1h30m");
});

Deno.test("the table scripts/settings-docs.ts prints has the README's cells, row for row", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const printed = markdown().trim().split("\n").map(tableCells);
  const inReadme = tableUnder(readme, "Configuration");
  // Delimiter rows differ only in their dashes (deno fmt pads them).
  assert.deepEqual(printed.slice(2), inReadme.slice(2));
  assert.deepEqual(printed[0], inReadme[0]);
});
