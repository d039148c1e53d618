// `switchyard up --cache-server`: what each process of a stack sharing one cache server is given (the
// cache server its KV-event port, every engine LMCache with that server as its remote at the stack's
// link rate, the router the server's events and the same rate), the engine flags refused because the
// engines would then not use it, and the server's ports checked before anything starts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { parseFlags } from "../../src/config/args.js";
import { CACHE_SERVER_SPECS, cacheServerPorts, cacheServerWiring } from "../../src/cli/up-cache-server.js";
import { spawnCli, upArgs } from "../../bench/support/cli.js";

const flagsOf = (argv: string[]) => parseFlags(argv, CACHE_SERVER_SPECS).flags;

test("up --cache-server: the cache server publishes KV events, every engine uses it as its LMCache remote, the router subscribes at the engines' link rate", () => {
  const w = cacheServerWiring(
    flagsOf([
      "--cache-server",
      "--cache-server-port",
      "7000",
      "--cache-server-events-port",
      "7001",
      "--cache-server-bandwidth-gbps",
      "40",
      "--cache-server-max-memory",
      "2GiB",
    ]),
    "127.0.0.1",
    ["--time-scale", "0.1"],
  )!;
  assert.deepEqual(w.serverArgs, [
    "cache-server",
    "--host",
    "127.0.0.1",
    "--port",
    "7000",
    "--kv-events-port",
    "7001",
    "--max-memory",
    String(2 * 2 ** 30),
  ]);
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
  ]);
  assert.match(w.summary, /cache server lm:\/\/127\.0\.0\.1:7000 .*KV events tcp:\/\/127\.0\.0\.1:7001/);
});

test("up --cache-server: defaults to a 100 GbE link (80 Gbit/s, the sim's 10 GB/s), and engines on every interface are reached on loopback", () => {
  const w = cacheServerWiring(flagsOf(["--cache-server"]), "0.0.0.0", [])!;
  assert.equal(w.engineEnv.LMCACHE_REMOTE_URL, "lm://127.0.0.1:65432");
  assert.deepEqual(w.engineArgs.slice(-2), ["--lmcache-remote-bandwidth", "10"]);
  assert.deepEqual(w.routerArgs, [
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
    ],
  );
});

test("up --cache-server: an engine's own LMCache connector flag is kept, and flags that would bypass the server or hide its rate from the router are refused", () => {
  const lm = '{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_both"}';
  const kept = cacheServerWiring(flagsOf(["--cache-server"]), "127.0.0.1", ["--kv-transfer-config", lm])!;
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
