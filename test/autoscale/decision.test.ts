// The SLO autoscaling decision (src/autoscale): sized by the engine model, ahead of a rising rate,
// slow and safe on the way down, bounded by min and max, on the signals' own clock; and the baselines'
// documented arithmetic (KEDA/HPA's ratio, tolerance and stabilisation; Dynamo's pool sizes).
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  Autoscaler,
  DynamoSla,
  EngineCapacity,
  HpaGpuUtil,
  KedaWaiting,
  trend,
  type AutoscaleConfig,
  type PoolSignals,
  type ReplicaSignal,
} from "../../src/autoscale/index.js";
import { defaultEngineConfig } from "../../src/engine/index.js";
import { resolveGpu, resolveModel } from "../../src/models/index.js";

const engine = defaultEngineConfig(resolveModel("meta-llama/Llama-3.1-8B-Instruct"), resolveGpu("h100"), {
  maxModelLen: 8192,
});
const shape = { promptTokens: 1000, outputTokens: 200, prefixHitRate: 0 };
const config: AutoscaleConfig = {
  ttftP90Ms: 1000,
  tpotP90Ms: 50,
  minReplicas: 1,
  maxReplicas: 64,
  startupSeconds: 120,
  scaleDownStabilizationSeconds: 300,
  intervalSeconds: 15,
};

const ready = (n: number): ReplicaSignal[] =>
  Array.from({ length: n }, (_, i) => ({ id: `e${i}`, state: "ready" as const, running: 4, waiting: 0 }));

function signals(
  nowS: number,
  rate: number,
  replicas: number,
  extra: Partial<PoolSignals> = {},
): PoolSignals {
  return {
    model: "m",
    role: "mixed",
    nowS,
    arrivalRatePerS: rate,
    meanPromptTokens: shape.promptTokens,
    meanOutputTokens: shape.outputTokens,
    prefixHitRate: 0,
    replicas: ready(replicas),
    ...extra,
  };
}

test("one replica's predicted p90s grow with its rate, and its sustainable rate holds the SLO", () => {
  const cap = new EngineCapacity(engine);
  const low = cap.latency("mixed", shape, 1);
  const high = cap.latency("mixed", shape, 10);
  assert.ok(low.stable && high.stable);
  assert.ok(high.ttftP90Ms > low.ttftP90Ms && high.tpotP90Ms > low.tpotP90Ms);
  const rate = cap.sustainableRate("mixed", shape, 1000, 50);
  assert.ok(rate > 1, `rate ${rate}`);
  const at = cap.latency("mixed", shape, rate);
  assert.ok(at.ttftP90Ms <= 1000 && at.tpotP90Ms <= 50);
  assert.ok(
    !(
      cap.latency("mixed", shape, rate * 1.2).ttftP90Ms <= 1000 &&
      cap.latency("mixed", shape, rate * 1.2).tpotP90Ms <= 50
    ),
  );
  // a cached prefix makes a replica worth more
  assert.ok(cap.sustainableRate("mixed", { ...shape, prefixHitRate: 0.8 }, 1000, 50) > rate);
});

test("the decision sizes a pool from the engine model: rate over one replica's rate at the SLO", () => {
  const a = new Autoscaler(config, new EngineCapacity(engine));
  const d = a.decide(signals(0, 40, 1));
  assert.ok(d.replicaRatePerS! > 0);
  const expected = Math.ceil(40 / d.replicaRatePerS!);
  assert.equal(d.desired, expected);
  assert.match(d.reason, /^up/);
  assert.ok(d.predictedTtftP90Ms! <= config.ttftP90Ms && d.predictedTpotP90Ms! <= config.tpotP90Ms);
});

test("a rising rate is met ahead of need: sized for the rate one start-up from now", () => {
  const cap = new EngineCapacity(engine);
  const rising = new Autoscaler(config, cap);
  const flat = new Autoscaler(config, cap);
  let up = 0;
  let level = 0;
  for (let t = 0; t <= 600; t += 15) {
    up = rising.decide(signals(t, 100 + t * 0.5, 20)).desired;
    level = flat.decide(signals(t, 400, 20)).desired;
  }
  // both see 400/s now; the rising one forecasts 400 + 0.5 × (120 + 15) and asks for more
  const d = rising.decide(signals(615, 407.5, 20));
  assert.ok(d.forecastRatePerS! > 470, `forecast ${d.forecastRatePerS}`);
  assert.ok(up > level, `rising ${up} flat ${level}`);
});

test("scale-down waits out the stabilisation window, and a lull shorter than it changes nothing", () => {
  const a = new Autoscaler(config, new EngineCapacity(engine));
  const high = a.decide(signals(0, 60, 1)).desired;
  let t = 15;
  for (; t <= 120; t += 15) assert.equal(a.decide(signals(t, 60, high)).desired, high);
  // the rate drops: held for the window (300 s since the last high recommendation), then down
  const dropAt = t;
  let downAt = -1;
  for (; t <= dropAt + 900; t += 15) {
    const d = a.decide(signals(t, 5, high));
    if (d.desired < high) {
      downAt = t;
      break;
    }
    assert.equal(d.desired, high);
  }
  assert.ok(downAt >= dropAt + 300 - 15, `down at ${downAt}, drop at ${dropAt}`);
});

test("min and max bound the count, and draining replicas are not counted as current", () => {
  const a = new Autoscaler({ ...config, minReplicas: 3, maxReplicas: 5 }, new EngineCapacity(engine));
  assert.equal(a.decide(signals(0, 1000, 4)).desired, 5);
  const b = new Autoscaler({ ...config, minReplicas: 3, maxReplicas: 5 }, new EngineCapacity(engine));
  const replicas = [...ready(2), { id: "d", state: "draining" as const, running: 1, waiting: 0 }];
  const d = b.decide(signals(0, 0, 0, { replicas }));
  assert.equal(d.current, 2);
  assert.equal(d.desired, 3);
});

test("a trend within its noise is no trend; a steady rise is", () => {
  const flat = [0, 15, 30, 45, 60].map((t, i) => ({ t, rate: 10 + (i % 2 === 0 ? 0.5 : -0.5) }));
  assert.equal(trend(flat, 60).slope, 0);
  const rise = [0, 15, 30, 45, 60].map((t) => ({ t, rate: 10 + t / 10 }));
  const r = trend(rise, 60);
  assert.ok(Math.abs(r.slope - 0.1) < 1e-9 && Math.abs(r.level - 16) < 1e-9);
});

test("keda-waiting follows the HPA's arithmetic: ceil of waiting over the threshold, 10% tolerance", () => {
  const k = new KedaWaiting(8, { minReplicas: 1, maxReplicas: 20 });
  const with_ = (n: number, waiting: number) =>
    Array.from({ length: n }, (_, i) => ({ id: `e${i}`, state: "ready" as const, running: 8, waiting }));
  // 4 replicas × 12 waiting = 48 → 48 / 8 = 6
  assert.equal(k.decide(signals(0, 1, 0, { replicas: with_(4, 12) })).desired, 6);
  // within the tolerance: 4 × 8.5 / 4 / 8 = 1.06 → no change
  const k2 = new KedaWaiting(8, { minReplicas: 1, maxReplicas: 20 });
  assert.equal(k2.decide(signals(0, 1, 0, { replicas: with_(4, 8.5) })).desired, 4);
  // no waiting: the recommendation is the minimum, held for the 300 s stabilisation window
  const k3 = new KedaWaiting(8, { minReplicas: 1, maxReplicas: 20 });
  k3.decide(signals(0, 1, 0, { replicas: with_(4, 8) }));
  assert.equal(k3.decide(signals(15, 1, 0, { replicas: with_(4, 0) })).desired, 4);
  assert.equal(k3.decide(signals(330, 1, 0, { replicas: with_(4, 0) })).desired, 1);
});

test("hpa-gpu-util scales on utilisation over its target, at most doubling (or +4) per period", () => {
  const h = new HpaGpuUtil(50, { minReplicas: 1, maxReplicas: 100 });
  const busy = Array.from({ length: 2 }, (_, i) => ({
    id: `e${i}`,
    state: "ready" as const,
    running: 1,
    waiting: 0,
    gpuUtilization: 1,
  }));
  // 100% over a 50% target: ×2, and the scale-up policy allows max(2 × 2, 2 + 4) = 6
  assert.equal(h.decide(signals(0, 1, 0, { replicas: busy })).desired, 4);
});

test("dynamo-sla sizes prefill and decode work from the profile and holds between adjustments", () => {
  const cap = new EngineCapacity(engine);
  const p = new DynamoSla(
    { ttftP90Ms: 1000, tpotP90Ms: 50, minReplicas: 1, maxReplicas: 64, adjustmentIntervalSeconds: 180 },
    cap,
  );
  const d = p.decide(signals(0, 40, 2));
  const prof = cap.profile(1000, 200, 1000, 50);
  const expected = Math.ceil((40 * 1000) / prof.prefillTokensPerS + (40 * 200) / prof.decodeTokensPerS);
  assert.equal(d.desired, expected);
  assert.equal(p.decide(signals(60, 400, 2)).desired, expected);
});

test("the decision runs on the signals' clock: the same signals give the same counts", () => {
  const run = () => {
    const a = new Autoscaler(config, new EngineCapacity(engine));
    const out: number[] = [];
    for (let t = 0; t < 1200; t += 15)
      out.push(a.decide(signals(t, 20 + 10 * Math.sin(t / 200), 10)).desired);
    return out;
  };
  assert.deepEqual(run(), run());
});

test("under P/D the prefill and decode pools are sized apart, each on its own bound and state", () => {
  const a = new Autoscaler(config, new EngineCapacity(engine));
  const p = a.decide(signals(0, 100, 1, { role: "prefill" }));
  const d = a.decide(signals(0, 100, 1, { role: "decode" }));
  assert.equal(p.role, "prefill");
  assert.equal(d.role, "decode");
  assert.notEqual(p.replicaRatePerS, d.replicaRatePerS);
  // a prefill replica is bounded by TTFT only: its TPOT bound does not limit it
  const loose = new Autoscaler({ ...config, tpotP90Ms: 1 }, new EngineCapacity(engine));
  assert.equal(loose.decide(signals(0, 100, 1, { role: "prefill" })).desired, p.desired);
  // the decode pool's later lull does not move the prefill pool's window
  for (let t = 15; t <= 600; t += 15) a.decide(signals(t, 1, d.desired, { role: "decode" }));
  assert.equal(a.decide(signals(615, 100, p.desired, { role: "prefill" })).desired, p.desired);
});
