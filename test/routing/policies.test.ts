import { test } from "node:test";
import assert from "node:assert/strict";
import {
  createPolicy,
  decide,
  policyReadsSessions,
  ROUTER_POLICY_NAMES,
  type RequestView,
} from "../../src/routing/index.js";
import { eng } from "../helpers/routing.js";

const req = (seq: number, over: Partial<RequestView> = {}): RequestView => ({ model: "m", seq, ...over });
const pickId = (d: ReturnType<typeof decide>) => (d.kind === "picked" ? d.engine.id : d.kind);

test("round-robin cycles; skips unhealthy, excluded and other-model engines", () => {
  const p = createPolicy("round-robin");
  const fleet = {
    engines: [eng("a"), eng("b"), eng("c", { healthy: false }), eng("d", { models: new Set(["x"]) })],
  };
  assert.deepEqual(
    [0, 1, 2, 3].map((s) => pickId(decide(p, req(s), fleet))),
    ["a", "b", "a", "b"],
  );
  assert.equal(pickId(decide(p, req(0, { exclude: new Set(["a"]) }), fleet)), "b");
  assert.equal(pickId(decide(p, req(0, { model: "zzz" }), fleet)), "unknown-model");
  assert.equal(pickId(decide(p, req(0, { model: "x" }), fleet)), "d");
  assert.equal(pickId(decide(p, req(0), { engines: [eng("a", { healthy: false })] })), "unavailable");
  assert.equal(
    pickId(decide(p, req(0), { engines: [eng("a", { inFlight: 2, maxInFlight: 2 })] })),
    "saturated",
  );
});

test("a request with headroom may take an engine at its cap, up to the cap plus its headroom, under every policy", () => {
  for (const name of ROUTER_POLICY_NAMES) {
    const p = createPolicy(name);
    const full = { engines: [eng("a", { inFlight: 2, maxInFlight: 2 })] };
    assert.equal(pickId(decide(p, req(0), full)), "saturated", name);
    assert.equal(pickId(decide(p, req(0, { headroom: 1 }), full)), "a", name);
    const over = { engines: [eng("a", { inFlight: 3, maxInFlight: 2 })] };
    assert.equal(pickId(decide(p, req(0, { headroom: 1 }), over)), "saturated", name);
  }
});

test("weights split traffic among healthy engines (canary)", () => {
  for (const name of ["round-robin", "least-load", "session"] as const) {
    const p = createPolicy(name);
    const stable = eng("stable", { weight: 9 });
    const canary = eng("canary", { weight: 1 });
    const fleet = { engines: [stable, canary] };
    const counts: Record<string, number> = { stable: 0, canary: 0 };
    for (let s = 0; s < 2000; s++) {
      const d = decide(p, req(s, { sessionKey: name === "session" ? `user-${s}` : undefined }), fleet);
      assert.equal(d.kind, "picked");
      if (d.kind !== "picked") continue;
      counts[d.engine.id]!++;
      // least-load and session see the load they create (it only grows here); round-robin ignores it
      d.engine.inFlight++;
    }
    const share = counts.canary! / 2000;
    assert.ok(share > 0.05 && share < 0.16, `${name}: canary share ${share}`);
    const zero = decide(p, req(0), { engines: [eng("a", { weight: 0 }), eng("b")] });
    assert.equal(pickId(zero), "b");
  }
});

test("least-load prefers fewer in-flight and queued requests, KV usage breaks ties, ties rotate", () => {
  const p = createPolicy("least-load");
  assert.equal(
    pickId(decide(p, req(0), { engines: [eng("a", { inFlight: 3 }), eng("b", { inFlight: 1 })] })),
    "b",
  );
  assert.equal(
    pickId(decide(p, req(0), { engines: [eng("a", { waiting: 5 }), eng("b", { running: 2 })] })),
    "b",
  );
  assert.equal(
    pickId(decide(p, req(0), { engines: [eng("a", { kvUsage: 0.9 }), eng("b", { kvUsage: 0.2 })] })),
    "b",
  );
  const tied = { engines: [eng("a"), eng("b"), eng("c")] };
  assert.deepEqual(
    [0, 1, 2].map((s) => pickId(decide(p, req(s), tied))),
    ["a", "b", "c"],
  );
});

test("session: same key → same engine; keys spread; bounded load spills; no key → least-load", () => {
  const p = createPolicy("session", { sessionLoadFactor: 1.25 });
  const engines = ["a", "b", "c", "d"].map((id) => eng(id));
  const fleet = { engines };
  const first = pickId(decide(p, req(0, { sessionKey: "alice" }), fleet));
  for (let s = 1; s < 20; s++) assert.equal(pickId(decide(p, req(s, { sessionKey: "alice" }), fleet)), first);
  const used = new Set<string>();
  for (let k = 0; k < 100; k++) used.add(pickId(decide(p, req(k, { sessionKey: `u${k}` }), fleet)));
  assert.equal(used.size, 4);
  // removing another engine does not move alice (consistent hashing)
  const without = {
    engines: engines
      .filter((e) => e.id !== first && e.id !== "a")
      .concat(engines.filter((e) => e.id === first)),
  };
  assert.equal(pickId(decide(p, req(0, { sessionKey: "alice" }), without)), first);
  // alice's engine is overloaded: her requests spill to another
  const hot = engines.map((e) => ({ ...e, inFlight: e.id === first ? 10 : 0 }));
  assert.notEqual(pickId(decide(p, req(0, { sessionKey: "alice" }), { engines: hot })), first);
  const loaded = { engines: [eng("a", { inFlight: 5 }), eng("b")] };
  assert.equal(pickId(decide(p, req(0), loaded)), "b");
});

test("policyReadsSessions names exactly the policies that read a request's session key (the edge tracks sessions for those alone); least-load reads only a named one", () => {
  for (const name of ROUTER_POLICY_NAMES) {
    const p = createPolicy(name);
    let reads = 0;
    // a multi-turn request through every hook a router calls: decide, first token, done, abandoned
    const view = {
      model: "m",
      seq: 1,
      messages: [{ role: "user", content: "hello ".repeat(100) }],
      body: { max_tokens: 8 },
      get sessionKey() {
        reads++;
        return "s-1";
      },
    } as RequestView;
    // engines whose first tokens the caller counts (the live router's and the simulator's views), and not
    const engines = [eng("a", { awaitingFirstToken: 0 }), eng("b", { awaitingFirstToken: 0 }), eng("c")];
    for (let turn = 0; turn < 3; turn++) {
      const d = decide(p, view, {
        engines: turn < 2 ? engines.slice(0, 2) : engines,
        now: 1_000 * (turn + 1),
      });
      assert.equal(d.kind, "picked", name);
      if (d.kind !== "picked") continue;
      p.onFirstToken?.(view, d.engine, 50);
      p.onDone?.(view, d.engine, 100);
      p.onAbandoned?.(view, d.engine, 100);
    }
    // least-load reads a key the request names, which the edge passes on without tracking sessions
    const named = name === "least-load";
    assert.equal(
      reads > 0,
      policyReadsSessions(name) || named,
      `${name} read the session key ${reads} times`,
    );
  }
  assert.equal(policyReadsSessions("nope"), false);
});
