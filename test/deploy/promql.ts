// Metric names referenced by PromQL expressions, so dashboards, alerts and autoscaling triggers can
// be checked against what the code exports. Not a PromQL parser: it removes what cannot be a metric
// name (strings, label matchers, ranges, grouping clauses, function calls, keywords) and keeps the rest.

const KEYWORDS = new Set([
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "bool",
  "and",
  "or",
  "unless",
  "offset",
  "inf",
  "nan",
  "atan2",
]);

const NAME = /[a-zA-Z_:][a-zA-Z0-9_:]*/y;

export function metricNames(expr: string): Set<string> {
  let s = expr
    // Grafana's label_values(metric, label) / label_values(label): the metric is the first argument
    .replace(/label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?\s*,[^)]*\)/g, " $1 ")
    .replace(/label_values\([^)]*\)/g, " ")
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ")
    .replace(/\$\{?[a-zA-Z_][a-zA-Z0-9_]*\}?/g, " ")
    .replace(/offset\s+-?[0-9a-z]+/g, " ");
  const out = new Set<string>();
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (/[0-9.]/.test(c)) {
      // a number literal, e.g. 0.99, 1e3, 0x1F
      const m = /^(0x[0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)/.exec(s.slice(i));
      i += m ? m[0].length : 1;
      continue;
    }
    NAME.lastIndex = i;
    const m = NAME.exec(s);
    if (!m) {
      i++;
      continue;
    }
    const name = m[0];
    i += name.length;
    const rest = s.slice(i);
    if (/^\s*\(/.test(rest)) continue; // function or aggregation call
    if (KEYWORDS.has(name.toLowerCase())) continue;
    out.add(name);
  }
  s = "";
  return out;
}

/** Sample names a metric family is scraped as. */
export function sampleNames(family: string, type: string): string[] {
  if (type === "histogram") return [`${family}_bucket`, `${family}_sum`, `${family}_count`];
  if (type === "summary") return [family, `${family}_sum`, `${family}_count`];
  return [family];
}

/** Every PromQL expression in a Grafana dashboard: panel targets (rows included) and query variables. */
export function dashboardExpressions(dashboard: unknown): string[] {
  const out: string[] = [];
  const visit = (v: unknown, key?: string): void => {
    if (Array.isArray(v)) return v.forEach((x) => visit(x));
    if (v && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) visit(x, k);
      return;
    }
    if (typeof v === "string" && key === "expr") out.push(v);
  };
  const d = dashboard as { panels?: unknown; templating?: { list?: Array<Record<string, unknown>> } };
  visit(d.panels);
  for (const variable of d.templating?.list ?? []) {
    if (variable.type !== "query") continue;
    const q = variable.query;
    if (typeof q === "string") out.push(q);
    else if (q && typeof q === "object" && typeof (q as { query?: unknown }).query === "string")
      out.push((q as { query: string }).query);
  }
  return out;
}
