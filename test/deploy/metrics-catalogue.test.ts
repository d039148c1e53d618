// The metric catalogue (docs/metrics.md) against live processes, and every PromQL expression in the
// dashboards, alert rules and the chart's KEDA trigger against the catalogue: no panel or alert may
// read a metric nobody exports.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parse as parseYaml } from "yaml";
import { dashboardExpressions, metricNames, sampleNames } from "./promql.js";
import { startLocalStack, type LocalStack } from "./stack.js";
import { repoRoot } from "./tools.js";
import { fixturePath } from "../helpers/vectors.js";

const root = repoRoot();
// a copy of shared/reference/vllm-engine-interface.md, so a clean clone checks against the same text
const VLLM_REFERENCE = fixturePath("reference/vllm-engine-interface.md");

interface CatalogueRow {
  name: string;
  type: string;
  source: string;
}

function readCatalogue(): CatalogueRow[] {
  const rows: CatalogueRow[] = [];
  for (const line of readFileSync(join(root, "docs", "metrics.md"), "utf8").split("\n")) {
    const m = /^\| `([^`]+)` \| (counter|gauge|histogram|summary) \| ([a-z-]+) \|/.exec(line);
    if (m) rows.push({ name: m[1]!, type: m[2]!, source: m[3]! });
  }
  return rows;
}

/** Metric families in a Prometheus text exposition, from its TYPE lines. */
function families(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1]!, m[2]!);
  return out;
}

async function scrape(url: string): Promise<Map<string, string>> {
  const res = await fetch(url);
  assert.equal(res.status, 200, `${url} answered ${res.status}`);
  return families(await res.text());
}

/** Every PromQL expression the deployment ships, with where it comes from. */
function shippedExpressions(): Array<{ where: string; expr: string }> {
  const out: Array<{ where: string; expr: string }> = [];
  const promDir = join(root, "deploy", "prometheus");
  for (const f of readdirSync(promDir).filter((f) => f.endsWith(".rules.yaml"))) {
    const doc = parseYaml(readFileSync(join(promDir, f), "utf8")) as {
      groups: Array<{ rules: Array<{ alert?: string; record?: string; expr: string }> }>;
    };
    for (const g of doc.groups)
      for (const r of g.rules) out.push({ where: `${f}: ${r.alert ?? r.record}`, expr: String(r.expr) });
  }
  const grafanaDir = join(root, "deploy", "grafana");
  for (const f of readdirSync(grafanaDir).filter((f) => f.endsWith(".json"))) {
    const d = JSON.parse(readFileSync(join(grafanaDir, f), "utf8")) as unknown;
    for (const expr of dashboardExpressions(d)) out.push({ where: f, expr });
  }
  // the KEDA trigger is a printf in the template: take the PromQL out of it
  const engines = readFileSync(
    join(root, "deploy", "helm", "switchyard", "templates", "engines.yaml"),
    "utf8",
  );
  for (const m of engines.matchAll(/printf "([^"]*\{[^"]*)"/g))
    if (/vllm:|switchyard_/.test(m[1]!)) out.push({ where: "templates/engines.yaml (KEDA)", expr: m[1]! });
  return out;
}

describe("PromQL metric-name extraction", () => {
  it("finds metric names and ignores functions, labels, ranges, grouping and variables", () => {
    const names = metricNames(
      'histogram_quantile(0.99, sum by (le, model) (rate(switchyard_time_to_first_token_seconds_bucket{namespace=~"$namespace",model="a b"}[$__rate_interval]))) > 2',
    );
    assert.deepEqual([...names], ["switchyard_time_to_first_token_seconds_bucket"]);
    assert.deepEqual(
      [
        ...metricNames(
          'sum(rate(vllm:prefix_cache_hits_total[5m])) / on (pod) group_left sum(up{job="x"}) offset 1h',
        ),
      ],
      ["vllm:prefix_cache_hits_total", "up"],
    );
    assert.deepEqual(
      [...metricNames("label_values(vllm:num_requests_running, namespace)")],
      ["vllm:num_requests_running"],
    );
    assert.deepEqual(
      [...metricNames("quantile_over_time(0.99, vllm:kv_cache_usage_perc[1h]) >= 0.92 and bool 1e3")],
      ["vllm:kv_cache_usage_perc"],
    );
  });
});

describe("metric catalogue", { timeout: 180_000 }, () => {
  let stack: LocalStack | undefined;
  const exported = new Map<string, { type: string; source: string }>();

  before(async () => {
    // offload and LoRA on in the first sim, claiming vLLM 0.32, and LMCache in the second, claiming the
    // default earlier release, so the families of both and of those options are exported too
    stack = await startLocalStack({
      simArgs: ["--kv-offloading-size=1", "--enable-lora", "--vllm-version", "0.32.0"],
      lmcacheSim: true,
    });
    const { simPort, lmcacheSimPort, routerPort, cacheMetricsPort } = stack;
    for (const [source, url] of [
      ["sim", `http://127.0.0.1:${simPort}/metrics`],
      ["sim", `http://127.0.0.1:${lmcacheSimPort}/metrics`],
      ["router", `http://127.0.0.1:${routerPort}/metrics`],
      ["cache-server", `http://127.0.0.1:${cacheMetricsPort}/metrics`],
    ] as const) {
      for (const [name, type] of await scrape(url)) exported.set(name, { type, source });
    }
  });

  after(async () => {
    await stack?.stop();
  });

  it("documents every switchyard_* and vllm:* family the processes export, with its type and source", () => {
    const rows = new Map(readCatalogue().map((r) => [r.name, r]));
    const ours = [...exported].filter(([n]) => n.startsWith("switchyard_") || n.startsWith("vllm:"));
    assert.ok(ours.length > 40, `expected the processes to export many families, got ${ours.length}`);
    const missing = ours.filter(([n]) => !rows.has(n)).map(([n, e]) => `${n} (${e.type}, ${e.source})`);
    assert.deepEqual(missing, [], "exported but missing from docs/metrics.md");
    for (const [name, e] of ours) {
      const row = rows.get(name)!;
      assert.equal(
        row.type,
        e.type,
        `${name}: docs/metrics.md says ${row.type}, ${e.source} exports ${e.type}`,
      );
      assert.equal(
        row.source,
        e.source,
        `${name}: docs/metrics.md says ${row.source}, exported by ${e.source}`,
      );
    }
  });

  it("has one row per metric", () => {
    const seen = new Set<string>();
    const twice = readCatalogue()
      .map((r) => r.name)
      .filter((n) => seen.has(n) || !seen.add(n));
    assert.deepEqual(twice, [], "rows written twice in docs/metrics.md");
  });

  it("lists no Switchyard metric that nobody exports", () => {
    const stale = readCatalogue()
      .filter((r) => r.source === "router" || r.source === "sim" || r.source === "cache-server")
      .filter((r) => !exported.has(r.name))
      .map((r) => r.name);
    assert.deepEqual(stale, [], "in docs/metrics.md but exported by no process");
  });

  it("names only metrics real vLLM has with vllm:, and marks those the sim emulates 'sim'", () => {
    const vllmRows = readCatalogue().filter((r) => r.name.startsWith("vllm:"));
    assert.ok(vllmRows.length > 20, `expected the vLLM families in docs/metrics.md, got ${vllmRows.length}`);
    for (const r of vllmRows.filter((r) => r.source === "vllm"))
      assert.ok(!exported.has(r.name), `${r.name} is emulated: mark it 'sim'`);
    assert.ok(existsSync(VLLM_REFERENCE), `${VLLM_REFERENCE} not present`);
    const ref = readFileSync(VLLM_REFERENCE, "utf8");
    // the reference names counters without _total and groups alternatives as a|b
    const refNames = new Set<string>();
    for (const m of ref.matchAll(/vllm:[a-z0-9_]+(?:\|[a-z0-9_]+)*/g)) {
      const [first, ...alts] = m[0].split("|");
      refNames.add(first!);
      const prefix = first!.slice(0, first!.lastIndexOf("_") + 1);
      for (const a of alts) refNames.add(prefix + a);
    }
    for (const r of vllmRows) {
      const base = r.name.replace(/_total$/, "");
      assert.ok(refNames.has(base) || refNames.has(r.name), `${r.name} is not in ${VLLM_REFERENCE}`);
    }
  });

  it("every dashboard panel, alert rule and KEDA trigger reads only catalogued metrics", () => {
    const allowed = new Set<string>();
    for (const r of readCatalogue()) for (const s of sampleNames(r.name, r.type)) allowed.add(s);
    for (const [n, e] of exported) for (const s of sampleNames(n, e.type)) allowed.add(s);
    const exprs = shippedExpressions();
    assert.ok(
      exprs.some((e) => e.where.includes("KEDA")),
      "the KEDA query was not found in the template",
    );
    assert.ok(
      exprs.filter((e) => e.where.endsWith(".json")).length > 40,
      "too few dashboard expressions found",
    );
    const unknown: string[] = [];
    let referenced = 0;
    for (const { where, expr } of exprs) {
      const names = metricNames(expr);
      assert.ok(names.size > 0, `${where}: no metric found in ${expr}`);
      for (const n of names) {
        referenced++;
        if (!allowed.has(n)) unknown.push(`${where}: ${n}`);
      }
    }
    assert.ok(referenced > 50);
    assert.deepEqual(unknown, [], "metrics referenced but neither exported nor catalogued");
  });

  it("would flag a panel that reads a metric nobody exports", () => {
    const allowed = new Set(readCatalogue().flatMap((r) => sampleNames(r.name, r.type)));
    const names = [...metricNames("sum(rate(vllm:gpu_cache_usage_perc[5m])) + switchyard_made_up_total")];
    assert.deepEqual(
      names.filter((n) => !allowed.has(n)),
      ["vllm:gpu_cache_usage_perc", "switchyard_made_up_total"],
    );
  });
});
