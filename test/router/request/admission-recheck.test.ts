// The admission queue's recheck (Policy.recheckMs): a policy that holds requests for room that time frees
// (vllm-router-program's acting TTL running out) gets them decided again while they wait, with no request
// ending to announce the room.
import { test } from "node:test";
import assert from "node:assert/strict";
import { AdmissionQueue } from "../../../src/router/request/admission.js";

// the queue's timers do not hold the process open (a router's server does): this test's does
const alive = setInterval(() => {}, 1000);
test.after(() => clearInterval(alive));

test("a waiting request is tried again on the recheck interval, and admitted without any kick", async () => {
  const q = new AdmissionQueue({ queueSize: 4, queueTimeout: 10_000 });
  q.recheckMs = 5;
  let tries = 0;
  await q.wait(() => ++tries >= 3, new AbortController().signal);
  assert.ok(tries >= 3);
  assert.equal(q.depth, 0);
});

test("without a recheck interval a waiting request is tried only when kicked", async () => {
  const q = new AdmissionQueue({ queueSize: 4, queueTimeout: 10_000 });
  let tries = 0;
  let room = false;
  const waiting = q.wait(() => (tries++, room), new AbortController().signal);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(tries, 0);
  room = true;
  q.kick();
  await waiting;
  assert.equal(tries, 1);
});
