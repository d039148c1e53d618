// `switchyard up --cache-server`: what each process of a stack sharing one cache server is given (the
// cache server its KV-event port, every engine LMCache with that server as its remote at the stack's
// link rate, the router the server's events and the same rate), the engine flags refused because the
// engines would then not use it, the server's ports checked before anything starts; and a real stack in
// which a long prompt's chunks reach the server and, by its KV events, the router's index of it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { parseFlags } from "../../src/config/args.js";
import { UP_OPTIONS } from "../../src/cli/up-options.js";
import { cacheServerPorts, cacheServerWiring } from "../../src/cli/up-cache-server.js";
import { freePorts, spawnCli, upArgs, waitForHttp } from "../../bench/support/cli.js";

const flagsOf = (argv: string[]) => parseFlags(argv, UP_OPTIONS.specs).flags;

test("up --cache-server: the cache server publishes KV events, every engine uses it as its LMCache remote, the router subscribes at the engines' link rate", () => {
  const w = cacheServerWiring(
    flagsOf([
      "--cache-server",
      "--cache-server-port",
      "7000",
      "--cache-server-events-port",
      "7001",
      "--cache-server-metrics-port",
      "7002",
      "--cache-server-bandwidth-gbps",
      "40",
      "--cache-server-max-memory",
      "2GiB",
    ]),
    "127.0.0.1",
    ["--time-scale", "0.1"],
    false,
    {},
  )!;
  assert.deepEqual(w.serverArgs, [
    "cache-server",
    "--host",
    "127.0.0.1",
    "--port",
    "7000",
    "--kv-events-port",
    "7001",
    "--kv-events-chunk-tokens",
    "256",
    "--max-memory",
    String(2 * 2 ** 30),
    "--metrics-port",
    "7002",
  ]);
  assert.equal(w.metricsUrl, "http://127.0.0.1:7002/metrics");
  // 40 Gbit/s is 5 GB/s, the sim's unit
  assert.deepEqual(w.engineArgs, ["--kv-offloading-backend", "lmcache", "--lmcache-remote-bandwidth", "5"]);
  assert.deepEqual(w.engineEnv, {
    LMCACHE_REMOTE_URL: "lm://127.0.0.1:7000",
    LMCACHE_PRE_CACHING_HASH_ALGORITHM: "sha256_cbor",
  });
  assert.deepEqual(w.routerArgs, [
    "--cache-server-events",
    "tcp://127.0.0.1:7001",
    "--cache-server-bandwidth-gbps",
    "40",
    "--cache-server-chunk-tokens",
    "256",
  ]);
  assert.match(w.summary, /cache server lm:\/\/127\.0\.0\.1:7000 .*KV events tcp:\/\/127\.0\.0\.1:7001/);
});

test("up --cache-server: defaults to a 100 GbE link (80 Gbit/s, the sim's 10 GB/s), and engines on every interface are reached on loopback", () => {
  const w = cacheServerWiring(flagsOf(["--cache-server"]), "0.0.0.0", [], false, {})!;
  assert.equal(w.engineEnv.LMCACHE_REMOTE_URL, "lm://127.0.0.1:65432");
  assert.deepEqual(w.engineArgs.slice(-2), ["--lmcache-remote-bandwidth", "10"]);
  assert.deepEqual(w.routerArgs.slice(0, 4), [
    "--cache-server-events",
    "tcp://127.0.0.1:65433",
    "--cache-server-bandwidth-gbps",
    "80",
  ]);
  assert.equal(cacheServerWiring(flagsOf([]), "127.0.0.1", []), null, "off without --cache-server");
  assert.deepEqual(cacheServerPorts(flagsOf([])), []);
  assert.deepEqual(
    cacheServerPorts(flagsOf(["--cache-server"])).map((p) => [p.port, p.flag]),
    [
      [65432, "--cache-server-port"],
      [65433, "--cache-server-events-port"],
      [65434, "--cache-server-metrics-port"],
    ],
  );
});

test("up --cache-server: the engines' LMCache chunk size from the environment reaches the cache server's events and the router's chunk hashes", () => {
  const w = cacheServerWiring(flagsOf(["--cache-server"]), "127.0.0.1", [], false, {
    LMCACHE_CHUNK_SIZE: "512",
  })!;
  assert.equal(w.serverArgs[w.serverArgs.indexOf("--kv-events-chunk-tokens") + 1], "512");
  assert.equal(w.routerArgs[w.routerArgs.indexOf("--cache-server-chunk-tokens") + 1], "512");
  assert.throws(
    () =>
      cacheServerWiring(flagsOf(["--cache-server"]), "127.0.0.1", [], false, { LMCACHE_CHUNK_SIZE: "big" }),
    /LMCACHE_CHUNK_SIZE must be a positive integer, got 'big'/,
  );
  // a config file's chunk_size would reach the sims only: the size must come from the environment too
  assert.throws(
    () =>
      cacheServerWiring(flagsOf(["--cache-server"]), "127.0.0.1", [], false, {
        LMCACHE_CONFIG_FILE: "lmcache.yaml",
      }),
    /LMCACHE_CONFIG_FILE: set LMCACHE_CHUNK_SIZE too/,
  );
  const both = cacheServerWiring(flagsOf(["--cache-server"]), "127.0.0.1", [], false, {
    LMCACHE_CONFIG_FILE: "lmcache.yaml",
    LMCACHE_CHUNK_SIZE: "512",
  })!;
  assert.equal(both.routerArgs[both.routerArgs.indexOf("--cache-server-chunk-tokens") + 1], "512");
});

test("up --cache-server: an engine's own LMCache connector flag is kept, and flags that would bypass the server or hide its rate from the router are refused", () => {
  const lm = '{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_both"}';
  const kept = cacheServerWiring(
    flagsOf(["--cache-server"]),
    "127.0.0.1",
    ["--kv-transfer-config", lm],
    false,
    {},
  )!;
  assert.deepEqual(kept.engineArgs, ["--lmcache-remote-bandwidth", "10"], "no second way to turn LMCache on");
  const refused: [string[], RegExp][] = [
    [["--kv-offloading-backend", "native"], /--kv-offloading-backend native would not use it/],
    [["--kv-offloading-backend=native"], /--kv-offloading-backend native would not use it/],
    [
      ["--kv-transfer-config", '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'],
      /other than LMCacheConnectorV1/,
    ],
    [["--lmcache-remote-bandwidth", "3"], /--cache-server-bandwidth-gbps, which the router prices loads by/],
  ];
  for (const [engine, message] of refused)
    assert.throws(() => cacheServerWiring(flagsOf(["--cache-server"]), "127.0.0.1", engine), message);
  assert.throws(
    () =>
      cacheServerWiring(flagsOf(["--cache-server", "--cache-server-events-port", "65432"]), "127.0.0.1", []),
    /must differ/,
  );
  assert.throws(
    () => cacheServerWiring(flagsOf(["--cache-server"]), "127.0.0.1", [], true),
    /P\/D engine runs NixlConnector, and an engine has one KV connector/,
  );
});

test("up --cache-server: a taken cache-server port fails the stack before anything starts, naming the port and its flag", async () => {
  const holder = createServer();
  await new Promise<void>((r) => holder.listen({ port: 0, host: "127.0.0.1" }, () => r()));
  const taken = (holder.address() as { port: number }).port;
  const up = await upArgs(1, [
    "--model",
    "Qwen/Qwen2.5-0.5B-Instruct",
    "--host",
    "127.0.0.1",
    "--cache-server",
    "--cache-server-port",
    String(taken),
  ]);
  const stack = spawnCli(up.args);
  try {
    const code = await stack.stop("SIGCONT");
    assert.equal(code, 2, stack.output().slice(-2000));
    assert.match(
      stack.output(),
      new RegExp(
        `port ${taken} \\(the cache server's lm://\\) on 127\\.0\\.0\\.1 is in use.*--cache-server-port`,
      ),
    );
  } finally {
    holder.close();
    await stack.stop("SIGKILL");
  }
});

/** The sum of a metric's samples on a Prometheus page. */
async function metricSum(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n"))
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.split(" ").pop());
  return sum;
}

test("up --cache-server --kv-curve: a long prompt's chunks are stored in the shared cache server and reach the router's index of it by its KV events over CURVE, the server serves its metrics; SIGINT stops the server too", async () => {
  const [lmPort, eventsPort, metricsPort] = await freePorts(3);
  const up = await upArgs(2, [
    "--model",
    "Qwen/Qwen2.5-0.5B-Instruct",
    "--time-scale",
    "0.1",
    "--cache-server",
    "--cache-server-port",
    String(lmPort),
    "--cache-server-events-port",
    String(eventsPort),
    "--cache-server-metrics-port",
    String(metricsPort),
    "--kv-curve",
  ]);
  const stack = spawnCli(up.args);
  const router = `http://127.0.0.1:${up.port}`;
  try {
    await waitForHttp(`${router}/ready`, 60_000, 200, stack);
    const r = await fetch(`${router}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "Qwen/Qwen2.5-0.5B-Instruct",
        // well over four 256-token chunks
        messages: [
          { role: "user", content: "Describe the rivers of Europe in careful detail. ".repeat(120) },
        ],
        max_tokens: 2,
      }),
    });
    assert.equal(r.status, 200);
    await r.arrayBuffer();
    // the engine stores the chunks after the step; the server announces them; the router indexes them
    for (let i = 0; (await metricSum(router, "switchyard_routing_tier_chunks")) < 4; i++) {
      assert.ok(i < 300, `the router's tier index stayed below 4 chunks:\n${stack.output().slice(-3000)}`);
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(await metricSum(router, "switchyard_routing_tier_events_flowing"), 1);
    // the server serves its own metrics (what `up --monitoring` scrapes)
    const server = `http://127.0.0.1:${metricsPort}`;
    assert.ok((await fetch(`${server}/metrics`)).ok);
    // printed once the router is ready, so surely by now
    assert.match(stack.output(), new RegExp(`cache server lm://127\\.0\\.0\\.1:${lmPort} `));
  } finally {
    const code = await stack.stop("SIGINT");
    assert.equal(code, 0, stack.output().slice(-2000));
  }
  // the cache server stopped with the stack: its ports are free again
  for (const port of [lmPort, eventsPort, metricsPort]) {
    const free = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once("error", () => resolve(false));
      s.listen({ port, host: "127.0.0.1", exclusive: true }, () => s.close(() => resolve(true)));
    });
    assert.ok(free, `port ${port} still bound`);
  }
});
