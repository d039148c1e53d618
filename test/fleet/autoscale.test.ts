// The autoscaler in the fleet simulator's loop (src/fleet/autoscale.ts): a new engine serves only after
// its start-up time; an engine chosen to leave gets no new request from that moment (the router's
// snapshot excludes it) and leaves only when it holds nothing; every request is answered.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { PoolSignals, ScaleDecision, ScalePolicy } from "../../src/autoscale/index.js";
import { defaultEngineConfig } from "../../src/engine/index.js";
import { simulateFleet, type FleetResult } from "../../src/fleet/fleet.js";
import { resolveGpu, resolveModel } from "../../src/models/index.js";
import { traceWorkload, TRACE_DEFAULTS, type TraceEntry } from "../../src/workload/trace.js";

const engine = defaultEngineConfig(resolveModel("meta-llama/Llama-3.1-8B-Instruct"), resolveGpu("h100"), {
  maxModelLen: 8192,
  blockHashAlgo: "fast",
});

/** a policy that asks for counts by the clock: [from second, count] steps */
function scripted(steps: [number, number][]): ScalePolicy {
  return {
    name: "scripted",
    decide(s: PoolSignals): ScaleDecision {
      let desired = steps[0]![1];
      for (const [t, n] of steps) if (s.nowS >= t) desired = n;
      const current = s.replicas.filter((r) => r.state !== "draining").length;
      return { model: s.model, role: s.role, current, desired, reason: "scripted" };
    },
  };
}

/** 4 requests a second for `seconds`, 400-token prompts, 300-token answers (each runs for seconds) */
function steady(seconds: number): TraceEntry[] {
  const out: TraceEntry[] = [];
  for (let i = 0; i < seconds * 4; i++)
    out.push({ timestampMs: i * 250, inputLength: 400, outputLength: 300, hashIds: [i], chatId: null });
  return out;
}

function run(steps: [number, number][], initial: number, startupS: number, seconds = 240): FleetResult {
  return simulateFleet({
    engine,
    engines: initial,
    policy: "least-load",
    scrapeIntervalS: 1,
    sharedServer: null,
    workload: traceWorkload(steady(seconds), { ...TRACE_DEFAULTS, seed: 1 }),
    qps: Infinity,
    arrival: "poisson",
    concurrency: Infinity,
    maxRequests: Infinity,
    durationS: Infinity,
    seed: 1,
    recordItl: false,
    autoscale: { policy: scripted(steps), intervalS: 15, startupS, initial, maxEngines: 6 },
  });
}

test("an engine chosen to leave gets no new request and leaves only when it holds nothing", () => {
  const r = run(
    [
      [0, 3],
      [60, 1],
    ],
    3,
    30,
  );
  const a = r.autoscale!;
  assert.equal(a.sentToLeaving, 0);
  assert.ok(
    r.records.every((x) => x.ok),
    "every request answered",
  );
  assert.equal(a.drains.length, 2);
  assert.ok(
    a.drains.some((d) => d.heldWhenChosen > 0),
    "a drained engine held requests when chosen",
  );
  for (const d of a.drains) {
    const mine = r.records.filter((x) => r.routedTo[x.index] === d.engine);
    // nothing new after it was chosen
    assert.ok(
      mine.every((x) => x.start / 1000 <= d.chosenAtS),
      `engine ${d.engine} got a request after ${d.chosenAtS}`,
    );
    // and it left when its last request ended, not before
    const lastEnd = Math.max(...mine.map((x) => (x.start + x.e2el) / 1000));
    assert.ok(d.leftAtS >= lastEnd - 1e-6, `left ${d.leftAtS} before its last request ended ${lastEnd}`);
    if (d.heldWhenChosen > 0) assert.ok(d.leftAtS > d.chosenAtS);
  }
});

test("a new engine serves only after its start-up time, and is billed from when it was asked for", () => {
  const startup = 45;
  const r = run(
    [
      [0, 1],
      [30, 3],
    ],
    1,
    startup,
    180,
  );
  const a = r.autoscale!;
  const asked = a.timeline.find((x) => x.starting > 0)!.t;
  for (const x of r.records) {
    const e = r.routedTo[x.index]!;
    if (e > 0) assert.ok(x.start / 1000 >= asked + startup - 1e-6, `engine ${e} served at ${x.start / 1000}`);
  }
  assert.ok(
    r.records.some((x) => r.routedTo[x.index]! > 0),
    "the new engines served",
  );
  assert.ok(r.records.every((x) => x.ok));
  // three engines: one from 0, two from `asked`, all up to the end
  const end = Math.max(...r.records.map((x) => (x.start + x.e2el) / 1000));
  assert.ok(a.gpuSeconds >= end + 2 * (end - asked) - 60 && a.gpuSeconds <= 3 * (end + 30));
  assert.equal(a.scaleEvents, 1);
});
