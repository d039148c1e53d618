// A router worker above its share of the group's client connections closes the excess after their
// responses, so that the kernel's hash placement of the reconnections evens the group out; within a
// little of its share, or in a group too small to matter, it keeps every connection.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ConnectionBalance,
  ConnectionCensus,
  MAX_UNSETTLED_MS,
  SETTLE_MS,
} from "../../../src/router/cluster/conn-balance.js";

function closes(b: ConnectionBalance): number {
  let n = 0;
  while (b.closeThis()) n++;
  return n;
}

test("a worker above its share closes the excess, one response each, and then keeps the rest", () => {
  const b = new ConnectionBalance();
  b.update(37, 64, 2);
  assert.equal(closes(b), 5, "37 of 64 is 5 above a share of 32");
  assert.equal(b.closeThis(), false);
});

test("a worker at or below its share, or within its slack, keeps every connection", () => {
  const b = new ConnectionBalance();
  b.update(27, 64, 2);
  assert.equal(closes(b), 0, "below its share");
  b.update(33, 64, 2);
  assert.equal(closes(b), 0, "one above: within the slack");
  b.update(134, 256, 2);
  assert.equal(closes(b), 0, "6 above 128: within 5% of it");
  b.update(136, 256, 2);
  assert.equal(closes(b), 8);
});

test("a newer report replaces what was still to close", () => {
  const b = new ConnectionBalance();
  b.update(40, 64, 2);
  assert.equal(b.closeThis(), true);
  b.update(32, 64, 2);
  assert.equal(closes(b), 0, "the group evened out by itself");
});

test("a lone process, or a group with a handful of connections a worker, never closes one", () => {
  const lone = new ConnectionBalance();
  lone.update(500, 500, 1);
  assert.equal(closes(lone), 0);
  const few = new ConnectionBalance();
  few.update(6, 8, 2);
  assert.equal(closes(few), 0, "a share of 4 is too few to matter");
});

test("a worker that is starting takes no connections: the others share them as if it were not there", () => {
  const b = new ConnectionBalance();
  // two of three workers listen; this one holds 40 of 64, the other 24
  b.update(40, 64, 2);
  assert.equal(closes(b), 8);
  // the other is restarting: this one holds every connection, and closing them would only bring them back
  b.update(64, 64, 1);
  assert.equal(closes(b), 0);
});

test("a worker whose count moved since its report decides nothing until the next total", () => {
  const b = new ConnectionBalance();
  // it reported 37 of 64, and has 35 now: two reconnections are in a report not yet in the total
  b.update(37, 64, 2, 35);
  assert.equal(closes(b), 0);
  b.update(35, 64, 2, 35);
  assert.equal(closes(b), 3);
});

test("the group's total goes out once no count has changed for the settle time, in a burst as one", () => {
  const c = new ConnectionCensus();
  assert.equal(c.due, undefined, "nothing new: nothing to send");
  // a client opens its connections in a burst: the two workers' reports come 3 ms apart
  c.changed(100);
  c.changed(103);
  assert.equal(c.due, 103 + SETTLE_MS);
  assert.equal(c.take(100 + SETTLE_MS), false, "the second report is not settled yet");
  assert.equal(c.take(103 + SETTLE_MS), true);
  assert.equal(c.due, undefined, "sent: nothing new until the next change");
  assert.equal(c.take(1000), false);
});

test("counts that keep moving still send a total every MAX_UNSETTLED_MS", () => {
  const c = new ConnectionCensus();
  for (let t = 0; t < MAX_UNSETTLED_MS; t += 10) c.changed(t);
  assert.equal(c.due, MAX_UNSETTLED_MS);
  assert.equal(c.take(MAX_UNSETTLED_MS), true);
});
