// A router worker above its share of the group's client connections closes the excess after their
// responses, so that the kernel's hash placement of the reconnections evens the group out; within a
// little of its share, or in a group too small to matter, it keeps every connection.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ConnectionBalance } from "../../../src/router/cluster/conn-balance.js";

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
