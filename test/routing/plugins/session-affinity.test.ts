// The session-affinity picker: a session's requests stay on one engine until it is over its bounded
// share of the load, then spill to the session's next engine; a request with no key goes by score.
import { test } from "node:test";
import assert from "node:assert/strict";
import { sessionPicker } from "../../../src/routing/plugins/session-affinity/picker.js";
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
