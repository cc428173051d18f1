// The layer rule, checked: no module under src/ imports from a layer above its own. The order is
// written here once and quoted in CONTRIBUTING.md, which this test reads so the two cannot drift.

import assert from "node:assert/strict";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/**
 * Lowest first. A module may import from its own layer and any layer below it. A path ending in
 * "/" names a folder; anything else one file.
 */
const LAYERS: readonly (readonly string[])[] = [
  ["src/async.ts", "src/bytes.ts", "src/log.ts", "src/metrics.ts", "src/units.ts"],
  ["src/queue/"],
  ["src/ollama/", "src/webhooks/", "src/views.ts"],
  ["src/worker/"],
  ["src/http/"],
  ["src/config.ts", "src/settings.ts", "src/permissions.ts"],
  ["src/app.ts"],
  ["src/cli/", "src/launcher.ts"],
];

function layerOf(path: string): number | undefined {
  const i = LAYERS.findIndex((layer) =>
    layer.some((p) => p.endsWith("/") ? path.startsWith(p) : path === p)
  );
  return i < 0 ? undefined : i;
}

/** The relative modules `source` imports or re-exports, statically or dynamically. */
export function importsOf(source: string): string[] {
  const found: string[] = [];
  const patterns = [
    /^\s*(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']/gm,
    /^\s*import\s*["']([^"']+)["']/gm,
    /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g,
  ];
  for (const re of patterns) {
    for (const m of source.matchAll(re)) if (m[1]?.startsWith(".")) found.push(m[1]);
  }
  return found;
}

/** Every import in `files` (path → source) that reaches a higher layer, as "from → to". */
export function upwardImports(files: ReadonlyMap<string, string>): string[] {
  const out: string[] = [];
  for (const [path, source] of files) {
    const own = layerOf(path)!;
    for (const spec of importsOf(source)) {
      const target = relative(ROOT, join(ROOT, dirname(path), spec)).replaceAll("\\", "/");
      const theirs = layerOf(target);
      if (theirs !== undefined && theirs > own) out.push(`${path} → ${target}`);
    }
  }
  return out;
}

async function sourceFiles(): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  async function walk(dir: string) {
    for await (const entry of Deno.readDir(join(ROOT, dir))) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) await walk(path);
      else if (path.endsWith(".ts")) files.set(path, await Deno.readTextFile(join(ROOT, path)));
    }
  }
  await walk("src");
  return files;
}

Deno.test("every module under src/ belongs to a layer", async () => {
  const unplaced = [...(await sourceFiles()).keys()].filter((p) => layerOf(p) === undefined);
  assert.deepEqual(unplaced, [], "add each new file or folder to LAYERS and CONTRIBUTING.md");
});

Deno.test("no module under src/ imports from a layer above its own", async () => {
  const files = await sourceFiles();
  const imports = [...files.values()].flatMap(importsOf);
  assert.ok(imports.length > 50, `only ${imports.length} relative imports found: parser broken?`);
  assert.deepEqual(upwardImports(files), []);
});

Deno.test("the layer check catches an upward import in any of its spellings", () => {
  const files = new Map([
    [
      "src/queue/pruner.ts",
      'import { sleep } from "../async.ts";\nimport type { Worker } from\n  "../worker/worker.ts";',
    ],
    ["src/log.ts", 'export { x } from "./config.ts";\nconst m = await import("./app.ts");'],
    ["src/worker/relay.ts", 'import "../http/router.ts";\nimport { relay } from "./relay.ts";'],
  ]);
  assert.deepEqual(upwardImports(files), [
    "src/queue/pruner.ts → src/worker/worker.ts",
    "src/log.ts → src/config.ts",
    "src/log.ts → src/app.ts",
    "src/worker/relay.ts → src/http/router.ts",
  ]);
});

Deno.test("CONTRIBUTING.md states the layer order the check enforces", async () => {
  const text = await Deno.readTextFile(join(ROOT, "CONTRIBUTING.md"));
  const order = LAYERS.map((layer) =>
    layer.map((p) => p.replace(/^src\//, "").replace(/(\.ts|\/)$/, "")).join(", ")
  ).join(" → ");
  assert.ok(text.includes(order), `CONTRIBUTING.md should contain the line:\n${order}`);
});
