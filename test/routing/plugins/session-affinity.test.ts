// The session-affinity picker: a session's requests stay on one engine until it is over its bounded
// share of the load, then spill to the session's next engine; a request with no key goes by score.
import { test } from "node:test";
import assert from "node:assert/strict";
import { sessionPicker } from "../../../src/routing/plugins/session-affinity/picker.js";
import {
  SESSION_LOAD_FACTOR_DEFAULT,
  sessionPolicy,
} from "../../../src/routing/plugins/session-affinity/policy.js";
import { decide } from "../../../src/routing/policy/decide.js";
import { eng } from "../../helpers/routing.js";

const picker = sessionPicker(1.25);
const flat = Float64Array.of(0, 0, 0, 0);

test("the session-affinity picker sends every request of a session to the same engine", () => {
  const engines = ["a", "b", "c", "d"].map((id) => eng(id));
  const home = picker({ model: "m", seq: 0, sessionKey: "s1" }, engines, flat, { engines })?.id;
  for (let seq = 1; seq < 8; seq++)
    assert.equal(picker({ model: "m", seq, sessionKey: "s1" }, engines, flat, { engines })?.id, home);
});

test("the session-affinity picker spills a session whose engine is over its bounded share", () => {
  const idle = ["a", "b", "c", "d"].map((id) => eng(id));
  const home = picker({ model: "m", seq: 0, sessionKey: "s1" }, idle, flat, { engines: idle })!.id;
  const busy = idle.map((e) => (e.id === home ? eng(e.id, { inFlight: 10 }) : e));
  const spilled = picker({ model: "m", seq: 0, sessionKey: "s1" }, busy, flat, { engines: busy })?.id;
  assert.notEqual(spilled, home);
});

test("the session-affinity picker sends a request with no session key to the highest score", () => {
  const engines = ["a", "b", "c", "d"].map((id) => eng(id));
  const scores = Float64Array.of(0, 0, 1, 0);
  assert.equal(picker({ model: "m", seq: 0 }, engines, scores, { engines })?.id, "c");
});

test("the session policy spills a session at 1.25 × the average in flight unless its config says otherwise", () => {
  const engines = ["a", "b"].map((id) => eng(id));
  const home = picker({ model: "m", seq: 0, sessionKey: "s1" }, engines, flat, { engines })!.id;
  // home holds 2 of 3 in flight: its cap ⌈1.25 × (3 + 1) / 2⌉ = 3 keeps the session; at a factor of 1 the cap
  // is 2, and the session spills
  const loaded = engines.map((e) => eng(e.id, { inFlight: e.id === home ? 2 : 1 }));
  const req = { model: "m", seq: 0, sessionKey: "s1" };
  const pick = (policy: ReturnType<typeof sessionPolicy>) => decide(policy, req, { engines: loaded });
  const kept = pick(sessionPolicy("session", {}));
  assert.equal(kept.kind === "picked" && kept.engine.id, home);
  const spilled = pick(sessionPolicy("session", { sessionLoadFactor: 1 }));
  assert.notEqual(spilled.kind === "picked" && spilled.engine.id, home);
  assert.equal(SESSION_LOAD_FACTOR_DEFAULT, 1.25);
});
