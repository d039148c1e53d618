import { test } from "node:test";
import assert from "node:assert/strict";
import { freePorts, hangGuardDeadline, spawnCli, waitForHttp } from "../../bench/support/cli.js";
import { LmClient } from "../../src/cacheserver/client.js";

test("switchyard cache-server: flags with units, metrics endpoint, graceful SIGTERM", async () => {
  const [port, metricsPort] = (await freePorts(2)) as [number, number];
  const p = spawnCli(
    [
      "cache-server",
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "--max-memory",
      "64MiB",
      "--metrics-port",
      String(metricsPort),
    ],
    { SWITCHYARD_LOG_LEVEL: "info" },
  );
  try {
    await waitForHttp(`http://127.0.0.1:${metricsPort}/health`, 30_000, 200, p);
    const c = await LmClient.connect("127.0.0.1", port);
    await c.put("k", Buffer.alloc(1000, 1));
    assert.equal((await c.get("k"))?.payload.length, 1000);
    assert.equal(await c.get("miss"), undefined);
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    for (const line of [
      'switchyard_cache_hits_total{tier="memory"} 1',
      "switchyard_cache_misses_total 1",
      "switchyard_cache_bytes_in_total 1000",
      "switchyard_cache_bytes_out_total 1000",
      'switchyard_cache_objects{tier="memory"} 1',
      "switchyard_cache_memory_budget_bytes 67108864",
      "switchyard_cache_connections 1",
      'switchyard_cache_protocol_errors_total{kind="bad_key"} 0',
      'switchyard_cache_get_latency_seconds_count{tier="memory"} 1',
    ])
      assert.ok(text.includes(line), `missing: ${line}\n${text}`);
    assert.equal(await p.stop("SIGTERM"), 0, p.output());
    assert.match(p.output(), /cache server stopped/);
    await assert.rejects(c.health());
  } finally {
    await p.stop("SIGKILL");
  }
});

test("switchyard cache-server rejects bad flags", async () => {
  const p = spawnCli(["cache-server", "--max-memory", "lots"]);
  const code = await new Promise((resolve) => p.child.once("exit", resolve));
  assert.equal(code, 2);
  assert.match(p.output(), /--max-memory: cannot read 'lots' as a size/);
});

test("switchyard cache-server --kv-events-port publishes KV events and counts them; its companions need it", async () => {
  const bad = spawnCli(["cache-server", "--kv-events-replay-port", "5601"]);
  assert.equal(await new Promise((resolve) => bad.child.once("exit", resolve)), 2);
  assert.match(bad.output(), /--kv-events-replay-port needs --kv-events-port/);
  const [port, eventsPort, metricsPort] = (await freePorts(3)) as [number, number, number];
  const p = spawnCli([
    "cache-server",
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
    "--kv-events-port",
    String(eventsPort),
    "--metrics-port",
    String(metricsPort),
  ]);
  try {
    await waitForHttp(`http://127.0.0.1:${metricsPort}/health`, 30_000, 200, p);
    const c = await LmClient.connect("127.0.0.1", port);
    await c.put("m@1@0@abc@bfloat16", Buffer.alloc(100, 1));
    await c.put("not-a-chunk", Buffer.alloc(100, 1));
    await c.close();
    const metrics = async () => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const stored = 'switchyard_cache_kv_events_chunks_total{event="stored"} 1';
    for (const deadline = hangGuardDeadline(10_000); !(await metrics()).includes(stored);) {
      assert.ok(Date.now() < deadline, await metrics()); // timing-ok: a hang guard
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.match(await metrics(), /switchyard_cache_kv_events_keys 1\n/);
  } finally {
    // SIGTERM: the event socket closes with the rest
    assert.equal(await p.stop(), 0);
  }
});

test("switchyard cache-server --listen opens one listener per namespace; --port beside --listen is refused", async () => {
  const [pa, pb, metricsPort] = (await freePorts(3)) as [number, number, number];
  const p = spawnCli([
    "cache-server",
    "--listen",
    `127.0.0.1:${pa}=team-a`,
    "--listen",
    `127.0.0.1:${pb}=team-b`,
    "--put-timeout",
    "5",
    "--metrics-port",
    String(metricsPort),
  ]);
  try {
    await waitForHttp(`http://127.0.0.1:${metricsPort}/health`, 30_000, 200, p);
    const a = await LmClient.connect("127.0.0.1", pa);
    const b = await LmClient.connect("127.0.0.1", pb);
    await a.put("k", Buffer.alloc(100, 1));
    assert.equal((await a.get("k"))?.payload.length, 100);
    assert.equal(await b.get("k"), undefined);
    assert.deepEqual(await b.list(), []);
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.ok(text.includes('switchyard_cache_namespace_connections_total{namespace="team-b"} 1'), text);
    await Promise.all([a.close(), b.close()]);
  } finally {
    await p.stop("SIGKILL");
  }
  for (const [args, message] of [
    [["--port", "1", "--listen", "2=a"], /--port and --listen/],
    [["--listen", "2=no spaces"], /--listen 2=no spaces: namespace/],
    [["--namespace-cidr", "10.0.0.0/40=a"], /not an address or CIDR block/],
  ] as const) {
    const bad = spawnCli(["cache-server", ...args]);
    const code = await new Promise((resolve) => bad.child.once("exit", resolve));
    assert.equal(code, 2, bad.output());
    assert.match(bad.output(), message);
  }
});
