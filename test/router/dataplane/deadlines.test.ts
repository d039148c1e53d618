import { test } from "node:test";
import assert from "node:assert/strict";
import { DeadlineQueue, type Deadline } from "../../../src/router/dataplane/deadlines.js";

/** A deadline that calls `fn` (the router's own are OwnedDeadlines; any object with fire() will do). */
function deadline(fn: () => void): Deadline {
  return { at: 0, prev: null, next: null, list: null, fire: fn };
}

test("deadlines fire once when due, in any mix of lengths; re-arming postpones; disarmed ones never fire", () => {
  const q = new DeadlineQueue();
  const fired: string[] = [];
  const a = deadline(() => fired.push("a"));
  const b = deadline(() => fired.push("b"));
  const c = deadline(() => fired.push("c"));
  const d = deadline(() => fired.push("d"));
  q.arm(a, 100, 0);
  q.arm(b, 100, 10);
  q.arm(c, 1000, 0);
  q.arm(d, 50, 0);
  assert.equal(q.size, 4);
  q.tick(49);
  assert.deepEqual(fired, []);
  q.tick(50);
  assert.deepEqual(fired, ["d"]);
  q.arm(a, 100, 60); // activity: a now due at 160
  q.disarm(c);
  q.tick(150);
  assert.deepEqual(fired, ["d", "b"]);
  q.tick(160);
  assert.deepEqual(fired, ["d", "b", "a"]);
  q.tick(5000);
  assert.deepEqual(fired, ["d", "b", "a"], "fired deadlines and disarmed ones stay quiet");
  assert.equal(q.size, 0);
  q.clear();
});

test("a deadline re-armed from its own action (keep-alive) fires again later, not in the same tick", () => {
  const q = new DeadlineQueue();
  let n = 0;
  const k = deadline(() => {
    n++;
    q.arm(k, 10, 10 * n);
  });
  q.arm(k, 10, 0);
  q.tick(10);
  assert.equal(n, 1);
  q.tick(15);
  assert.equal(n, 1);
  q.tick(20);
  assert.equal(n, 2);
  q.disarm(k);
  q.tick(100);
  assert.equal(n, 2);
  q.clear();
});

test("the shared timer really fires a short deadline on its own", async () => {
  const q = new DeadlineQueue();
  // the queue's timer is unref'd (it must not keep a router alive): hold the loop open here
  const hold = setTimeout(() => undefined, 60_000);
  const t0 = performance.now();
  const at = await new Promise<number>((resolve) =>
    q.arm(
      deadline(() => resolve(performance.now())),
      30,
    ),
  );
  clearTimeout(hold);
  assert.ok(at - t0 >= 29, `fired after ${at - t0} ms`);
  q.clear();
});
