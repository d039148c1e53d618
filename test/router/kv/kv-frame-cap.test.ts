// A router's KV-event sockets against a peer that sends one huge frame: vLLM's publisher has no
// authentication, so whoever reaches the collector's port can write to it. A 64 MiB frame is refused
// by libzmq's size cap before it is allocated, the sender loses its connection, the metric counts it,
// and the router's resident memory never holds the frame. Real router processes (a lone one in
// collector mode, and a primary whose relay binds for its workers), real ZMQ over loopback.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { Publisher } from "zeromq";
import { freePorts, spawnCli, waitForHttp, type Spawned } from "../../../bench/support/cli.js";
import { startFakeEngine } from "../../../bench/support/fakes/fake-engine.js";
import { waitUntil } from "../../helpers/router.js";

/** Resident memory of a process in bytes, now (VmRSS) or at its peak (VmHWM) (Linux /proc); null elsewhere. */
function memoryOf(pid: number, field: "VmRSS" | "VmHWM"): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Restarts a process's peak resident memory (VmHWM) from its resident memory now; false where it cannot. */
function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

/** One sample of a counter on the router's /metrics, 0 when absent. */
async function sample(url: string, name: string, labels: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}} `));
  return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
}

const MIB = 2 ** 20;

async function hugeFrameAgainst(
  proc: Spawned,
  url: string,
  collector: string,
  socket: string,
): Promise<void> {
  const pub = new Publisher({ linger: 0 });
  pub.connect(collector);
  const topic = Buffer.from("kv@10.9.9.9:8000@m");
  const seq = Buffer.alloc(8);
  try {
    // the collector binds once an engine is in rotation: send small messages until one is counted
    await waitUntil(
      async () => {
        await pub.send([topic, seq, Buffer.from([0x90])]);
        return (
          (await sample(url, "switchyard_routing_kv_collector_messages_total", 'outcome="unknown-engine"')) >
          0
        );
      },
      20_000,
      "the collector to count a small message",
    );
    // the frame's cost is read at the peak: a frame allocated and read would lift the peak by its size
    // even if freed before the end. What else the router does meanwhile (work still settling after
    // start, at any pace) moves it by tens of MiB at most, so the peak is judged against the frame's
    // size, not against a guess of that noise.
    const pid = proc.child.pid!;
    const peakKnown = resetPeak(pid);
    const before = memoryOf(pid, "VmRSS");
    const frame = 64 * MIB;
    const cut = await sample(url, "switchyard_zmq_disconnects_total", `socket="${socket}"`);
    await pub.send([topic, seq, Buffer.alloc(frame, 1)]);
    await waitUntil(
      async () => (await sample(url, "switchyard_zmq_disconnects_total", `socket="${socket}"`)) > cut,
      20_000,
      "libzmq to cut the sender off",
    );
    // the sender reconnects by itself, and its small messages are taken again
    const small = await sample(
      url,
      "switchyard_routing_kv_collector_messages_total",
      'outcome="unknown-engine"',
    );
    await waitUntil(
      async () => {
        await pub.send([topic, seq, Buffer.from([0x90])]);
        return (
          (await sample(url, "switchyard_routing_kv_collector_messages_total", 'outcome="unknown-engine"')) >
          small
        );
      },
      20_000,
      "small messages after the reconnect",
    );
    const peak = memoryOf(pid, "VmHWM");
    const after = memoryOf(pid, "VmRSS");
    if (peakKnown && before !== null && peak !== null && after !== null) {
      console.log(
        `router (${socket}) resident memory: ${(before / MIB).toFixed(1)} -> ${(after / MIB).toFixed(1)} MiB, ` +
          `peak ${(peak / MIB).toFixed(1)} MiB`,
      );
      assert.ok(
        peak - before < frame,
        `resident memory peaked ${((peak - before) / MIB).toFixed(1)} MiB above where it was: the 64 MiB frame was held`,
      );
    }
  } finally {
    pub.close();
  }
}

/** A router process over a fake engine, collecting KV events on a bound socket, sent a 64 MiB frame. */
async function routerCollectorGetsHugeFrame(extra: string[], socket: string): Promise<void> {
  const eng = await startFakeEngine({});
  const [port, kv] = await freePorts(2);
  const proc = spawnCli([
    "router",
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
    ...extra,
    "--policy",
    "kv",
    "--backend",
    eng.url,
    "--kv-events-bind",
    `tcp://127.0.0.1:${kv}`,
  ]);
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${url}/ready`, 30_000, 200, proc);
    await hugeFrameAgainst(proc, url, `tcp://127.0.0.1:${kv}`, socket);
  } finally {
    await proc.stop();
    await eng.close();
  }
}

test("a 64 MiB frame sent to a router's KV-event collector is refused, counted, and leaves its memory alone", async () => {
  await routerCollectorGetsHugeFrame([], "kv-collector");
});

test("with router workers, the primary's relay refuses a 64 MiB frame before any worker sees it", async () => {
  await routerCollectorGetsHugeFrame(["--workers", "2"], "kv-relay");
});
