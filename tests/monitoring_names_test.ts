// The Grafana dashboard and the Prometheus rules may name only series that exist: every metric
// name in their PromQL is one a real foreman's /metrics exports, a recording rule defines, or
// Prometheus itself writes (up). A misspelt or removed metric fails here, not on an empty panel.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { startForeman } from "../harness/foreman.ts";
import { OllamaSim } from "../sim/mod.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const DASHBOARD = `${ROOT}deploy/grafana/foreman.json`;
const RULES = `${ROOT}deploy/prometheus/foreman.rules.yml`;

/** Series Prometheus writes for every target. */
const PROMETHEUS_SERIES = new Set(["up"]);

const KEYWORDS = new Set([
  "and",
  "or",
  "unless",
  "bool",
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "offset",
  "inf",
  "nan",
]);

/**
 * The metric names a PromQL expression reads. Enough of PromQL for dashboards and rules: strings,
 * label matchers, ranges, grouping lists, offsets, numbers and Grafana variables are dropped, and
 * what remains that is not a function call or a keyword is a metric name. `__name__` matchers
 * would hide a name from this reading, so they are refused.
 */
export function metricNames(expr: string): string[] {
  if (expr.includes("__name__")) throw new Error(`cannot check a __name__ matcher: ${expr}`);
  const labelValues = /^\s*label_values\((.*),\s*[A-Za-z_]\w*\s*\)\s*$/s.exec(expr);
  if (labelValues) return metricNames(labelValues[1]!);
  if (/^\s*label_values\(\s*[A-Za-z_]\w*\s*\)\s*$/.test(expr)) return [];
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\$\{[^}]*\}|\$[A-Za-z_]\w*/g, "")
    .replace(/\[[^\]]*\]/g, "")
    .replace(/\{[^}]*\}/g, "")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "")
    .replace(/\boffset\s+-?[\dsmhdwy]+/g, "")
    .replace(/@\s*(start|end)\s*\(\s*\)|@\s*[\d.]+/g, "")
    .replace(/(?<![A-Za-z0-9_:.])\d[\d.]*(e[+-]?\d+)?/gi, "");
  const names = new Set<string>();
  for (const m of bare.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const calls = /^\s*\(/.test(bare.slice(m.index! + m[0].length));
    if (!calls && !KEYWORDS.has(m[0].toLowerCase())) names.add(m[0]);
  }
  return [...names];
}

interface Dashboard {
  panels: Panel[];
  templating: { list: { name: string; type: string; query?: unknown; definition?: string }[] };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: { refId: string; expr: string; datasource?: { uid: string } }[];
  panels?: Panel[];
}

interface RuleFile {
  groups: { name: string; rules: { record?: string; alert?: string; expr: string }[] }[];
}

/** Every PromQL expression of a dashboard, with where it sits. */
function dashboardExprs(d: Dashboard): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  const walk = (panels: Panel[]) => {
    for (const p of panels) {
      for (const t of p.targets ?? []) out.push({ where: `panel "${p.title}"`, expr: t.expr });
      walk(p.panels ?? []);
    }
  };
  walk(d.panels);
  for (const v of d.templating.list) {
    if (v.type !== "query") continue;
    const q = typeof v.query === "string" ? v.query : (v.query as { query: string }).query;
    out.push({ where: `variable $${v.name}`, expr: q });
  }
  return out;
}

function ruleExprs(r: RuleFile): { where: string; expr: string }[] {
  return r.groups.flatMap((g) =>
    g.rules.map((rule) => ({ where: `rule ${rule.record ?? rule.alert}`, expr: rule.expr }))
  );
}

/** The names a /metrics body defines: every TYPE line, with a histogram's three series. */
function exportedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\w+)$/gm)) {
    if (m[2] === "histogram") {
      for (const suffix of ["_bucket", "_sum", "_count"]) names.add(m[1] + suffix);
    } else {
      names.add(m[1]!);
    }
  }
  for (const m of text.matchAll(/^([A-Za-z_:][A-Za-z0-9_:]*)[{ ]/gm)) names.add(m[1]!);
  return names;
}

/** Names the dashboard and rules use that nothing defines, as "name (where)". */
function unknownNames(dashboard: Dashboard, rules: RuleFile, exported: Set<string>): string[] {
  const defined = new Set([...exported, ...PROMETHEUS_SERIES]);
  for (const g of rules.groups) for (const r of g.rules) if (r.record) defined.add(r.record);
  const unknown: string[] = [];
  for (const { where, expr } of [...dashboardExprs(dashboard), ...ruleExprs(rules)]) {
    for (const name of metricNames(expr)) {
      if (!defined.has(name)) unknown.push(`${name} (${where})`);
    }
  }
  return unknown;
}

const dashboard = JSON.parse(Deno.readTextFileSync(DASHBOARD)) as Dashboard;
const rules = parseYaml(Deno.readTextFileSync(RULES)) as RuleFile;

async function realExportedNames(): Promise<Set<string>> {
  const sim = await OllamaSim.start({ loadMs: 5, tokenMs: 1 });
  const fm = await startForeman({ ollamaUrl: sim.url });
  try {
    const res = await fetch(fm.url + "/metrics", { headers: fm.headers() });
    assert.equal(res.status, 200);
    return exportedNames(await res.text());
  } finally {
    await fm.stop();
    await sim.close();
  }
}

Deno.test("the dashboard and the rules name only metrics a real foreman exports or a rule records", async () => {
  const exported = await realExportedNames();
  assert.ok(exported.has("foreman_jobs") && exported.has("foreman_job_wait_seconds_bucket"));
  assert.deepEqual(unknownNames(dashboard, rules, exported), []);
  // The check is not vacuous: it read names out of every expression.
  const used = new Set(
    [...dashboardExprs(dashboard), ...ruleExprs(rules)].flatMap((e) => metricNames(e.expr)),
  );
  assert.ok(used.size >= 15, [...used].join(", "));
});

Deno.test("a dashboard panel or a rule naming a metric that does not exist fails the check", async () => {
  const exported = await realExportedNames();
  const badDashboard = structuredClone(dashboard);
  const panel = badDashboard.panels.find((p) => p.title === "Target up")!;
  panel.targets![0]!.expr = 'foreman_target_upp{instance=~"$instance"}';
  const badRules = structuredClone(rules);
  badRules.groups[1]!.rules[0]!.expr = "foreman_scrape_ok == 0";
  badRules.groups[0]!.rules.push({
    record: "instance:foreman_thing:rate5m",
    expr: "sum by (instance) (rate(foreman_things_total[5m]))",
  });
  assert.deepEqual(unknownNames(badDashboard, badRules, exported), [
    'foreman_target_upp (panel "Target up")',
    "foreman_things_total (rule instance:foreman_thing:rate5m)",
    "foreman_scrape_ok (rule ForemanDown)",
  ]);
});

Deno.test("metric names are read out of PromQL past functions, matchers, groupings and variables", () => {
  const cases: [string, string[]][] = [
    ['foreman_jobs{state="queued"} / ignoring(state) foreman_queue_limit > 0.8', [
      "foreman_jobs",
      "foreman_queue_limit",
    ]],
    [
      "histogram_quantile(0.95, sum by (instance, le) (rate(foreman_job_wait_seconds_bucket[5m])))",
      ["foreman_job_wait_seconds_bucket"],
    ],
    ['sum(rate(foreman_http_requests_total{code=~"5.."}[$__rate_interval])) by (code)', [
      "foreman_http_requests_total",
    ]],
    ['up{job="foreman", instance=~"${instance}"} == bool 0', ["up"]],
    ["a unless b offset 15m or c and on(x) group_left(y) d", ["a", "b", "c", "d"]],
    ["label_values(foreman_target_up, instance)", ["foreman_target_up"]],
    ["label_values(instance)", []],
    ["instance:foreman_model_swaps:increase1h > 1e3", ["instance:foreman_model_swaps:increase1h"]],
    ["instance:foreman_jobs_failed:ratio_rate15m > 0.2", [
      "instance:foreman_jobs_failed:ratio_rate15m",
    ]],
    ["sum without (le) (foreman_job_run_seconds_count @ 1700000000) or vector(0)", [
      "foreman_job_run_seconds_count",
    ]],
  ];
  for (const [expr, names] of cases) assert.deepEqual(metricNames(expr), names, expr);
  assert.throws(() => metricNames('{__name__="foreman_jobs"}'), /__name__/);
});

Deno.test("the dashboard shows queue, latency, outcomes, swaps, target, embeddings and webhooks", () => {
  const exprs = dashboardExprs(dashboard).map((e) => e.expr).join("\n");
  for (
    const needed of [
      "foreman_jobs{",
      "instance:foreman_job_wait_seconds:quantile_rate5m",
      "instance:foreman_job_run_seconds:quantile_rate5m",
      "instance_outcome:foreman_jobs_finished:rate5m",
      "instance:foreman_model_swaps:increase1h",
      "foreman_target_up",
      "instance_status:foreman_embed_requests:rate5m",
      "instance_outcome:foreman_webhook_deliveries:rate5m",
      "foreman_oldest_queued_seconds",
    ]
  ) {
    assert.ok(exprs.includes(needed), needed);
  }
  // Well formed for Grafana: unique ids, a 24-column grid, every query on the chosen data source.
  const ids = dashboard.panels.map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length);
  for (const p of dashboard.panels) {
    assert.ok(p.gridPos.x >= 0 && p.gridPos.x + p.gridPos.w <= 24, p.title);
    if (p.type === "row") continue;
    assert.equal(p.datasource?.uid, "${datasource}", p.title);
    assert.ok(p.targets!.length > 0, p.title);
    for (const t of p.targets!) {
      assert.equal(t.datasource?.uid, "${datasource}", p.title);
      assert.match(t.expr, /instance=~"\$instance"/, `${p.title} follows the foreman selector`);
    }
  }
  const vars = dashboard.templating.list.map((v) => `${v.name}:${v.type}`);
  assert.deepEqual(vars, ["datasource:datasource", "instance:query"]);
});
