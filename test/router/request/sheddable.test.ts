// A sheddable tenant (priority below 0) is never queued: with every engine full its request is
// refused at once with 429 and Retry-After, and it takes no queue room a higher band could use.
import { test } from "node:test";
import assert from "node:assert/strict";
import { AdmissionQueue } from "../../../src/router/request/admission.js";
import { HttpError } from "../../../src/http/errors.js";

test("a sheddable flow is refused at once with 429 and Retry-After when no engine has room, and queues nothing", async () => {
  const q = new AdmissionQueue({ queueSize: 8, queueTimeout: 30_000 });
  const signal = new AbortController().signal;
  const shed = { key: "batch", weight: 1, priority: -1 };
  await assert.rejects(
    q.wait(() => false, signal, shed),
    (e: unknown) =>
      e instanceof HttpError &&
      e.status === 429 &&
      e.headers["retry-after"] === "1" &&
      /'batch' is sheddable/.test(e.message),
  );
  assert.equal(q.depth, 0, "nothing waits");
  // room at the moment it asks: it goes
  await q.wait(() => true, signal, shed);
  // a flow of priority 0 waits for room as before
  let room = false;
  const waiting = q.wait(() => room, signal, { key: "std", weight: 1, priority: 0 });
  assert.equal(q.depth, 1);
  room = true;
  q.kick();
  await waiting;
  assert.equal(q.depth, 0);
});
