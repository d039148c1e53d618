#!/usr/bin/env node
// Runs every panel query of deploy/grafana/*.json against a Prometheus that scrapes a live stack
// (e.g. the one `switchyard up --monitoring` prints) and says which return data. Exit 1 when a query
// fails to run or comes back empty without a known reason. Needs `npm run build` first.
// Usage: node scripts/check-dashboards.mjs [PROMETHEUS_URL (http://127.0.0.1:9090)] [--window 1m]
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { checkDashboards, dashboardQueries } = await import(join(root, "dist/src/ops/dashboards.js"));
const args = process.argv.slice(2);
const w = args.indexOf("--window");
const window = w >= 0 ? args.splice(w, 2)[1] : "1m";
const prometheus = (args[0] ?? "http://127.0.0.1:9090").replace(/\/+$/, "");
const results = await checkDashboards(prometheus, dashboardQueries(join(root, "deploy", "grafana")), window);
let bad = 0;
for (const r of results) {
  if (r.verdict === "error" || r.verdict === "empty") bad++;
  console.log(`${r.verdict.padEnd(14)} ${r.dashboard} | ${r.panel} | ${r.detail}`);
}
const n = (v) => results.filter((r) => r.verdict === v).length;
console.log(
  `\n${results.length} queries: ${n("data")} with data, ${n("expected-empty")} empty as expected, ${n("empty")} empty, ${n("error")} failed`,
);
process.exit(bad ? 1 : 0);
