// What a router group's processes say to each other leaves once per turn (src/router/cluster/outbox.ts)
// without changing what is said: the order holds, and a source's counts folded together read as the
// last of them. And how many processes `workers: auto` starts, with how many V8 background threads
// each and which young generation (src/router/cluster/worker-count.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Outbox } from "../../../src/router/cluster/outbox.js";
import type { ToWorker } from "../../../src/router/cluster/protocol.js";
import { availableParallelism } from "node:os";
import { usableCores, workerCount, workerExecArgv } from "../../../src/router/cluster/worker-count.js";
import { HEAP_SET_ENV } from "../../../src/obs/node-flags.js";

const turn = () => new Promise<void>((r) => setImmediate(r));

test("the messages of one turn leave in one write, in the order they were sent", async () => {
  const writes: unknown[] = [];
  const box = new Outbox<ToWorker>((m) => writes.push(m));
  box.send({ t: "load", source: "w1", load: [["http://a", 1, 1, 0]] });
  box.send({ t: "claimed", results: [[1, true]] });
  box.send({ t: "drain" });
  assert.equal(writes.length, 0);
  await turn();
  assert.deepEqual(writes, [
    {
      t: "many",
      ms: [
        { t: "load", source: "w1", load: [["http://a", 1, 1, 0]] },
        { t: "claimed", results: [[1, true]] },
        { t: "drain" },
      ],
    },
  ]);
  box.send({ t: "drain" });
  await turn();
  assert.deepEqual(writes[1], { t: "drain" }, "a lone message goes as itself");
});

test("a source's counts sent twice in a turn arrive as one message holding the later row of each engine", async () => {
  const writes: ToWorker[] = [];
  const box = new Outbox<ToWorker>((m) => writes.push(m as ToWorker));
  const first: ToWorker = { t: "load", source: "w1", load: [["http://a", 1, 1, 0]] };
  box.send(first);
  box.send({ t: "load", source: "w2", load: [["http://a", 5, 0, 0]] });
  box.send({
    t: "load",
    source: "w1",
    load: [
      ["http://a", 2, 1, 0],
      ["http://b", 1, 0, 0],
    ],
  });
  // counts never pass over another kind of message: the answer after them reads them
  box.send({ t: "claimed", results: [[7, false]] });
  box.send({ t: "load", source: "w1", load: [["http://a", 3, 0, 0]] });
  await turn();
  assert.deepEqual(writes, [
    {
      t: "many",
      ms: [
        {
          t: "load",
          source: "w1",
          load: [
            ["http://a", 2, 1, 0],
            ["http://b", 1, 0, 0],
          ],
        },
        { t: "load", source: "w2", load: [["http://a", 5, 0, 0]] },
        { t: "claimed", results: [[7, false]] },
        { t: "load", source: "w1", load: [["http://a", 3, 0, 0]] },
      ],
    },
  ]);
  assert.deepEqual(
    first.load,
    [["http://a", 1, 1, 0]],
    "a message shared by several outboxes is not changed",
  );
});

test("workers: auto serves round-robin from every core and a load-aware policy from one process", () => {
  const cfg = { workers: "auto" as const, port: 8080, admission: { maxInFlightPerEngine: 0 } };
  assert.equal(workerCount({ ...cfg, policy: "round-robin" }, 2, true).workers, 2);
  assert.equal(workerCount({ ...cfg, policy: "round-robin" }, 64, true).workers, 8, "capped");
  assert.equal(workerCount({ ...cfg, policy: "predictive" }, 2, true).workers, 1);
  assert.equal(workerCount({ ...cfg, policy: "round-robin", port: 0 }, 2, true).workers, 1, "port 0");
  assert.equal(workerCount({ ...cfg, policy: "round-robin" }, 2, false).workers, 1, "no SO_REUSEPORT");
  assert.equal(
    workerCount({ ...cfg, policy: "round-robin", admission: { maxInFlightPerEngine: 4 } }, 2, true).workers,
    1,
    "a per-engine cap reads load",
  );
  assert.equal(workerCount({ ...cfg, policy: "predictive", workers: 3 }, 2, true).workers, 3, "as set");
  assert.equal(
    workerCount({ ...cfg, policy: "round-robin", workers: 1 }, 2, true).workers,
    1,
    "1 forces one",
  );
});

test("auto counts the cores a container's CPU limit allows, not the node's", () => {
  assert.equal(
    usableCores(() => "200000 100000\n"),
    Math.min(2, availableParallelism()),
  );
  assert.equal(
    usableCores(() => "50000 100000\n"),
    1,
    "half a core is one",
  );
  assert.equal(
    usableCores(() => "max 100000\n"),
    availableParallelism(),
    "no quota",
  );
  assert.equal(
    usableCores(() => {
      throw new Error("no cgroup v2");
    }),
    availableParallelism(),
  );
});

test("workers keep no more V8 background threads than the cores give each, unless the operator chose", () => {
  const own = ["--max-semi-space-size=8"];
  const env = {};
  const policy = "predictive";
  assert.deepEqual(workerExecArgv(own, env, 2, 2, policy), [...own, "--v8-pool-size=1"]);
  assert.deepEqual(workerExecArgv(own, { NODE_OPTIONS: "" }, 6, 2, policy), [...own, "--v8-pool-size=3"]);
  // a share of one core or less still leaves the collector a thread
  assert.deepEqual(workerExecArgv([], env, 2, 8, policy), ["--v8-pool-size=1"]);
  // where the share reaches V8's default of four, nothing is added
  assert.deepEqual(workerExecArgv(own, env, 8, 2, policy), own);
  assert.deepEqual(workerExecArgv(["--v8-pool-size=3"], env, 2, 2, policy), ["--v8-pool-size=3"]);
  assert.deepEqual(workerExecArgv([], { NODE_OPTIONS: "--inspect --v8-pool-size=2" }, 2, 2, policy), []);
  // node takes `_` for `-` in its flags
  assert.deepEqual(workerExecArgv(["--v8_pool_size=3"], env, 2, 2, policy), ["--v8_pool_size=3"]);
  // the primary's own flags are copied, not shared
  const argv = workerExecArgv(own, env, 2, 2, policy);
  argv.push("x");
  assert.deepEqual(own, ["--max-semi-space-size=8"]);
});

test("round-robin workers run on V8's young generation where the router chose its own, not the operator", () => {
  const ours = { [HEAP_SET_ENV]: "1" };
  const argv = ["--max-semi-space-size=8", "--enable-source-maps"];
  assert.deepEqual(workerExecArgv(argv, ours, 2, 2, "round-robin"), [
    "--enable-source-maps",
    "--v8-pool-size=1",
  ]);
  // a policy that keeps the routing indexes keeps the router's size
  assert.deepEqual(workerExecArgv(argv, ours, 2, 2, "predictive"), [...argv, "--v8-pool-size=1"]);
  // the operator's size (no mark: the router did not re-execute itself for it) stays
  assert.deepEqual(workerExecArgv(argv, {}, 2, 2, "round-robin"), [...argv, "--v8-pool-size=1"]);
});
