// Server-side figures: the exposition parser, and the names the bench reads against the registries
// that really export them (a renamed metric must fail here, not read as null in every report).
import { test } from "node:test";
import assert from "node:assert/strict";
import { parsePrometheus } from "../../src/protocol/prometheus-text.js";
import { serverFigures } from "../../src/bench/scrape.js";
import { RouterMetrics } from "../../src/router/telemetry/metrics.js";

test("parsePrometheus sums a family's series, skipping quoted label values with spaces and braces", () => {
  const s = parsePrometheus(
    [
      "# HELP vllm:num_preemptions_total preemptions",
      "# TYPE vllm:num_preemptions_total counter",
      'vllm:num_preemptions_total{model_name="a b} {c",engine="0"} 2',
      'vllm:num_preemptions_total{model_name="x\\"y",engine="1"} 3 1700000000000',
      "vllm:num_preemptions_total 5",
      "not_a_number NaN",
      "",
    ].join("\n"),
  );
  assert.equal(s.get("vllm:num_preemptions_total"), 10);
  assert.equal(s.has("not_a_number"), false);
});

test("router retries are read from the router's own retry counter", async () => {
  const m = new RouterMetrics({ forEachEngine: () => {}, queueDepth: () => 0 });
  const before = parsePrometheus(await m.registry.metrics());
  m.retries.inc({ model: "m", reason: "connect" }, 2);
  m.retries.inc({ model: "m", reason: "status" });
  const after = parsePrometheus(await m.registry.metrics());
  assert.equal(serverFigures(before, after).router_retries, 3);
});
