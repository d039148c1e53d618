// Late binding in virtual time, on the shape that needed it: 40 groups of prompts sharing 3,000-token
// prefixes at 6 req/s on 4 × L4, past what the fleet serves, so prompts queue. Held in the router and
// bound cheapest first, they come out sooner and the fleet serves more than when every request is bound
// to an engine's first-come-first-served queue on arrival (the live run: docs/benchmarks.md).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fleetOptionsFor } from "../../src/fleet/build.js";
import { simulateFleet } from "../../src/fleet/fleet.js";
import { fleetReport } from "../../src/fleet/report.js";
import { parseScenarioText } from "../../src/fleet/scenario.js";

const scenario = readFileSync(
  new URL("../../../examples/scenarios/shared-prefix-kv-pressure-4xl4.yaml", import.meta.url),
  "utf8",
);

function run(seed: number, queuedPrompts: number) {
  const text = scenario.replace(/seed: 1/, `seed: ${seed}\n  queued_prompts: ${queuedPrompts}`);
  const o = fleetOptionsFor(parseScenarioText(text, "kv-pressure"), "none");
  const rep = fleetReport(o, simulateFleet(o), 0).bench;
  return {
    tps: Number(rep.output_throughput),
    p50: Number(rep.median_ttft_ms),
    p90: Number(rep.p90_ttft_ms),
    failed: Number(rep.failed),
  };
}

test("predictive under a backlog: held in the router and bound cheapest first, prompts get their first token sooner and the fleet serves more than bound on arrival", () => {
  let tps = [0, 0];
  let p50 = [0, 0];
  let p90 = [0, 0];
  for (const seed of [1, 2]) {
    const now = run(seed, 0);
    const late = run(seed, 2);
    assert.equal(late.failed, 0);
    tps = [tps[0]! + now.tps, tps[1]! + late.tps];
    p50 = [p50[0]! + now.p50, p50[1]! + late.p50];
    p90 = [p90[0]! + now.p90, p90[1]! + late.p90];
  }
  assert.ok(tps[1]! > tps[0]!, `output tok/s ${tps.join(" → ")}`);
  assert.ok(p50[1]! < 0.85 * p50[0]!, `TTFT p50 ${p50.join(" → ")}`);
  assert.ok(p90[1]! < p90[0]!, `TTFT p90 ${p90.join(" → ")}`);
});
