// Interop with Python peers written against pyzmq + msgpack, the way vLLM's consumers and vLLM itself are.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { KvEventBatch } from "../../src/kvevents/events.js";
import { ZmqEventPublisher } from "../../src/kvevents/publisher.js";
import { KvEventSubscriber } from "../../src/kvevents/subscriber.js";
import { missingTool } from "../deploy/tools.js";
import { batchNo, loopbackConfig, waitFor } from "./helpers.js";
import { typedFromVectorForm } from "./vectors.js";

// Compiled tests run from dist/test/kvevents; the scripts stay in the source tree.
const scriptDir = import.meta.url.endsWith(".ts")
  ? new URL("./", import.meta.url)
  : new URL("../../../test/kvevents/", import.meta.url);
const script = (name: string) => fileURLToPath(new URL(name, scriptDir));

const python = process.env.PYTHON ?? "python3";
const hasPyDeps = spawnSync(python, ["-c", "import zmq, msgpack"], { stdio: "ignore" }).status === 0;
// Under `npm test` and CI the deps are installed (.ci/install-tools.sh), so a missing one fails the run.
const skip = hasPyDeps
  ? false
  : missingTool(`${python} cannot import zmq, msgpack (pip install pyzmq msgpack)`);

/** Reads a child's stdout as JSON lines. */
function jsonLines(child: ChildProcess): { lines: Array<Record<string, unknown>>; stderr: () => string } {
  const lines: Array<Record<string, unknown>> = [];
  let err = "";
  createInterface({ input: child.stdout! }).on("line", (l) =>
    lines.push(JSON.parse(l) as Record<string, unknown>),
  );
  child.stderr!.on("data", (b: Buffer) => (err += b.toString()));
  return { lines, stderr: () => err };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(t);
}

test("a Python (pyzmq + msgpack) subscriber decodes what our publisher sends", { skip }, async () => {
  const pub = await ZmqEventPublisher.create(
    loopbackConfig({ topic: "kv@sim@llama", replay_endpoint: null }),
  );
  const count = 8;
  const child = spawn(
    python,
    [script("py_subscriber.py"), pub.endpoint, "kv@sim@llama", String(count), "20"],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const out = jsonLines(child);
  try {
    await waitFor(() => out.lines.length > 0, "the Python subscriber to start", 60_000);
    // PUB drops until the subscription arrives: keep publishing until Python has its `count`.
    let i = 0;
    while (out.lines.length < count + 1) {
      pub.publish(batchNo(i++));
      await new Promise((r) => setTimeout(r, 20));
      assert.ok(i < 3000, `Python received too little: ${out.stderr()}`); // a hang guard: ~60 s
    }
    const received = out.lines.slice(1);
    let prev: number | undefined;
    for (const line of received) {
      assert.equal(line.topic, "kv@sim@llama");
      const seq = line.seq as number;
      if (prev !== undefined) assert.equal(seq, prev + 1);
      prev = seq;
      const batch: KvEventBatch = typedFromVectorForm(line.batch as unknown[]);
      assert.deepEqual(batch, batchNo(seq));
    }
  } finally {
    await stop(child);
    await pub.close();
  }
});

const H = (i: number) => (1n << 63n) + BigInt(i);
const range = (a: number, b: number) => Array.from({ length: b - a }, (_, k) => a + k);

/** what py_publisher.py sends, as typed batches */
const PY_BATCHES: KvEventBatch[] = [
  {
    ts: 1763700000.5,
    events: [
      {
        type: "BlockStored",
        blockHashes: [H(0), H(1)],
        parentBlockHash: null,
        tokenIds: range(0, 32),
        blockSize: 16,
        loraId: null,
        medium: "GPU",
      },
    ],
    dataParallelRank: 0,
  },
  {
    ts: 1763700001.0,
    events: [
      {
        type: "BlockStored",
        blockHashes: [H(2)],
        parentBlockHash: H(1),
        tokenIds: range(32, 48),
        blockSize: 16,
        loraId: null,
        medium: "GPU",
        loraName: null,
      },
    ],
    dataParallelRank: 0,
  },
  {
    ts: 1763700001.5,
    events: [{ type: "BlockRemoved", blockHashes: [H(0)], medium: "GPU" }],
    dataParallelRank: 0,
  },
  {
    ts: 1763700002.0,
    events: [
      { type: "BlockRemoved", blockHashes: [H(1)], medium: "GPU", groupIdx: 1, locality: "LOCAL" },
      { type: "AllBlocksCleared" },
    ],
    dataParallelRank: null,
  },
];

for (const withTopic of [false, true]) {
  test(
    `our subscriber decodes a Python publisher's vLLM-shaped frames and fills a lost one by replay (replay ${withTopic ? "with" : "without"} topic frame)`,
    { skip },
    async () => {
      const args = [script("py_publisher.py"), "kv@py"];
      if (withTopic) args.push("--replay-with-topic");
      const child = spawn(python, args, { stdio: ["pipe", "pipe", "pipe"] });
      const out = jsonLines(child);
      let sub: KvEventSubscriber | undefined;
      try {
        await waitFor(() => out.lines.length > 0, "the Python publisher's endpoints", 60_000);
        const { endpoint, replay } = out.lines[0] as { endpoint: string; replay: string };
        const got: Array<[number, KvEventBatch]> = [];
        const gaps: Array<[number, number]> = [];
        sub = await KvEventSubscriber.create({
          endpoint,
          replayEndpoint: replay,
          topic: "kv@py",
          onBatch: (s, b) => got.push([s, b]),
          onGap: (a, b) => gaps.push([a, b]),
        });
        await waitFor(() => got.length === 4, `four batches (python: ${out.stderr()})`, 60_000);
        assert.deepEqual(
          got.map(([s]) => s),
          [0, 1, 2, 3],
        );
        assert.deepEqual(
          got.map(([, b]) => b),
          PY_BATCHES,
        );
        assert.deepEqual(gaps, []);
        assert.equal(sub.stats.replayRequests, 1);
      } finally {
        await sub?.close();
        child.stdin!.end();
        await stop(child);
      }
    },
  );
}
