// Prints the settings table from src/settings.ts as the shipped foreman.toml (`toml`) or as the
// README's Markdown table (`markdown`), so the three spellings never drift apart.
// Usage: deno run scripts/settings-docs.ts toml > foreman.toml

import { flagName, secretFileVar, SETTINGS } from "../src/settings.ts";

function tomlValue(kind: string, def: string): string {
  if (kind === "int" || kind === "bool") return def;
  if (kind === "list") return "[]";
  return JSON.stringify(def);
}

export function toml(): string {
  const out = [
    "# foreman configuration. Every setting also has an env name (FOREMAN_*) and a flag (--name);",
    "# later sources win: built-in defaults < this file < environment < flags.",
    "# Secrets are best kept out of this file: use the *_FILE env variables (or `<key>_file` here).",
    "# Durations use Go/Ollama syntax (30s, 5m, 24h, -1); sizes accept 262144, 256KiB, 16MiB.",
  ];
  let section = "";
  for (const s of SETTINGS) {
    const [sec = "", key] = s.toml.split(".");
    if (sec !== section) {
      out.push("", `[${sec}]`);
      section = sec;
    }
    const file = secretFileVar(s) ? ` (or ${secretFileVar(s)})` : "";
    out.push(`# ${s.help}. env ${s.env}${file}, flag --${flagName(s)}`);
    const line = `${key} = ${tomlValue(s.kind, s.default)}`;
    out.push(s.default === "" || s.kind === "secret" || s.kind === "list" ? `# ${line}` : line);
  }
  return out.join("\n") + "\n";
}

export function markdown(): string {
  const rows = [
    "| TOML key | env | flag | default | meaning |",
    "|---|---|---|---|---|",
  ];
  // A pipe inside a cell would end it: GitHub renders `debug|info` as two cells.
  const cell = (text: string) => text.replaceAll("|", "\\|");
  for (const s of SETTINGS) {
    rows.push(
      `| \`${s.toml}\` | \`${s.env}\` | \`--${flagName(s)}\` | ${
        s.default ? `\`${cell(s.default)}\`` : "empty"
      } | ${cell(s.help)} |`,
    );
  }
  return rows.join("\n") + "\n";
}

if (import.meta.main) {
  console.log(Deno.args[0] === "markdown" ? markdown() : toml());
}
