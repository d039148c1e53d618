// The routing library's load signal and SLO admission in virtual time (deterministic, no wall clock).
import { test } from "node:test";
import assert from "node:assert/strict";
import { defaultEngineConfig } from "../../src/engine/index.js";
import { resolveGpu, resolveModel } from "../../src/models/index.js";
import { simulateFleet, type FleetOptions } from "../../src/fleet/fleet.js";
import { randomWorkload } from "../../src/workload/random.js";
import { percentile } from "../../src/workload/stats.js";

const engine = defaultEngineConfig(resolveModel("meta-llama/Llama-3.1-8B-Instruct"), resolveGpu("h100"), {
  maxModelLen: 8192,
  blockHashAlgo: "fast",
});

function run(over: Partial<FleetOptions>): ReturnType<typeof simulateFleet> {
  return simulateFleet({
    engine,
    engines: 3,
    policy: "round-robin",
    sessionKey: "none",
    scrapeIntervalS: 1,
    sharedServer: null,
    workload: randomWorkload({ inputLen: 2048, outputLen: 64, rangeRatio: 0.5, seed: 5, count: 300 }),
    qps: Infinity,
    arrival: "poisson",
    concurrency: 24,
    maxRequests: 300,
    durationS: Infinity,
    seed: 5,
    recordItl: false,
    ...over,
  });
}

const ttftP50 = (r: ReturnType<typeof simulateFleet>) =>
  percentile(
    r.records.filter((x) => x.ok).map((x) => x.ttft),
    50,
  );

test("least-load with a 1 s scrape is not misled by engines that drained since: as fast as round-robin", () => {
  const rr = run({ policy: "round-robin" });
  const ll = run({ policy: "least-load" });
  assert.ok(
    ttftP50(ll) <= ttftP50(rr) * 1.1,
    `least-load ${ttftP50(ll)} ms vs round-robin ${ttftP50(rr)} ms`,
  );
  assert.ok(
    ll.durationS <= rr.durationS * 1.03,
    `least-load ${ll.durationS} s vs round-robin ${rr.durationS} s`,
  );
});

test("predictive with a TTFT SLO in overload: refused requests are answered at once, admitted ones meet it", () => {
  // 100 requests/s of 2,048-token prompts on 3 engines: about twice what they serve
  const r = run({ policy: "predictive", concurrency: Infinity, qps: 100, sloTtftMs: 300 });
  const refused = r.records.filter((x) => x.httpStatus === 429);
  const served = r.records.filter((x) => x.ok);
  assert.ok(refused.length > 50, `${refused.length} refused`);
  assert.ok(served.length > 20, `${served.length} served`);
  assert.ok(refused.every((x) => x.e2el === 0 && !Number.isFinite(x.ttft)));
  const p90 = percentile(
    served.map((x) => x.ttft),
    90,
  );
  assert.ok(p90 <= 300, `admitted TTFT p90 ${p90} ms`);
  const none = run({ policy: "predictive", concurrency: Infinity, qps: 100 });
  assert.equal(none.records.filter((x) => x.ok).length, 300, "no SLO: everything is served");
});

test("a router group (workers, replicas) places a burst of cold long prompts as one router does", () => {
  // like the routing benchmark's first round: 17 users' long prompts arriving within a quarter second
  const burst = (routers: number, seed: number) =>
    run({
      engines: 4,
      policy: "predictive",
      workload: randomWorkload({ inputLen: 8000, outputLen: 16, rangeRatio: 0, seed, count: 17 }),
      qps: 68,
      concurrency: Infinity,
      maxRequests: 17,
      seed,
      routers,
    });
  for (let seed = 1; seed <= 4; seed++) {
    const one = burst(1, seed);
    for (const routers of [2, 4]) {
      const group = burst(routers, seed);
      const perEngine = [0, 0, 0, 0];
      for (const e of group.routedTo) perEngine[e]!++;
      assert.ok(
        Math.max(...perEngine) - Math.min(...perEngine) <= 1,
        `seed ${seed}, ${routers} routers: ${perEngine.join("/")}`,
      );
      const mean = (r: typeof one) => r.records.reduce((s, x) => s + x.ttft, 0) / r.records.length;
      assert.ok(
        mean(group) <= mean(one) * 1.005,
        `seed ${seed}, ${routers} routers: mean TTFT ${mean(group).toFixed(0)} ms, one router ${mean(one).toFixed(0)} ms`,
      );
    }
  }
});
