// `up --autoscale`'s scaler against a stand-in router on loopback, one round at a time: the engine chosen
// to leave is the one holding least, it leaves the backends file (the router's signal to drain it) before
// anything else, and it is stopped only once the router no longer lists it — never while the router
// still counts requests on it; a rise starts engines on the lowest free slots; never below MIN or one.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalScaler, type ScaledEngine } from "../../src/cli/up-autoscale.js";

interface FakeRouter {
  url: string;
  desired: number;
  /** what GET /engines lists: url → requests in flight */
  engines: Map<string, number>;
  server: Server;
}

async function fakeRouter(): Promise<FakeRouter> {
  const r = { desired: 1, engines: new Map<string, number>() } as FakeRouter;
  r.server = createServer((req, res) => {
    const body =
      req.url === "/autoscale"
        ? { enabled: true, pools: [{ model: "m", role: "mixed", desired: r.desired, reason: "test" }] }
        : { engines: [...r.engines].map(([url, inFlight]) => ({ url, inFlight })) };
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  });
  await new Promise<void>((ok) => r.server.listen(0, "127.0.0.1", ok));
  const a = r.server.address() as { port: number };
  r.url = `http://127.0.0.1:${a.port}`;
  return r;
}

const engineUrl = (slot: number) => `http://127.0.0.1:${9100 + slot}`;

test("a falling decision drains the engine holding least and stops it only once the router let it go", async () => {
  const router = await fakeRouter();
  const dir = mkdtempSync(join(tmpdir(), "switchyard-scaler-"));
  const file = join(dir, "engines.json");
  const launched: number[] = [];
  const retired: string[] = [];
  const scaler = new LocalScaler({
    routerUrl: router.url,
    backendsFile: file,
    range: { min: 1, max: 3 },
    intervalMs: 60_000,
    launch: (slot) => {
      launched.push(slot);
      return { slot, url: engineUrl(slot), child: {} as ChildProcess, phase: "starting" };
    },
    ready: async () => undefined,
    retire: async (e) => void retired.push(e.url),
  });
  const inFile = () =>
    (JSON.parse(readFileSync(file, "utf8")) as { backends: { url: string }[] }).backends.map((b) => b.url);
  try {
    const two: ScaledEngine[] = [0, 1].map((slot) => ({
      slot,
      url: engineUrl(slot),
      child: {} as ChildProcess,
      phase: "serving",
    }));
    scaler.adopt(two);
    assert.deepEqual(inFile(), [engineUrl(0), engineUrl(1)]);

    // the decision falls to one: engine 1 holds less, so it leaves the file; nothing is stopped yet
    router.desired = 1;
    router.engines = new Map([
      [engineUrl(0), 5],
      [engineUrl(1), 2],
    ]);
    await scaler.step();
    assert.deepEqual(inFile(), [engineUrl(0)]);
    assert.deepEqual(retired, []);
    // the router still lists it, draining with requests on it: it stays, round after round
    router.engines.set(engineUrl(1), 1);
    await scaler.step();
    await scaler.step();
    assert.deepEqual(retired, []);
    assert.deepEqual(
      scaler.events.map((e) => e.what),
      ["draining"],
    );
    // the router let it go (it held nothing): now it is stopped
    router.engines.delete(engineUrl(1));
    await scaler.step();
    assert.deepEqual(retired, [engineUrl(1)]);
    assert.deepEqual(
      scaler.events.map((e) => `${e.what} ${e.url}`),
      [`draining ${engineUrl(1)}`, `stopped ${engineUrl(1)}`],
    );
    // never below one engine, whatever the decision says
    router.desired = 0;
    await scaler.step();
    assert.deepEqual(inFile(), [engineUrl(0)]);

    // a rise to three starts two on the lowest free slots, each in the file once it is ready
    router.desired = 3;
    await scaler.step();
    assert.deepEqual(launched, [1, 2]);
    assert.deepEqual(inFile().sort(), [engineUrl(0), engineUrl(1), engineUrl(2)]);
    // and MAX holds: a decision above it starts nothing more
    router.desired = 7;
    await scaler.step();
    assert.deepEqual(launched, [1, 2]);
  } finally {
    scaler.stop();
    router.server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
