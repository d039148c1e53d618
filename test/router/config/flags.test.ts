// The router's flags are its config schema's: every flag sets the field that declares it, typed,
// bounded and defaulted by the schema, and is layered over the config file as before.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseFlags } from "../../../src/config/args.js";
import { configFromFlags, flagSpecsOf, schemaFlags } from "../../../src/config/schema-flags.js";
import { parseConfig, routerConfigSchema } from "../../../src/router/config/config.js";

const flags = schemaFlags(routerConfigSchema);
const specs = flagSpecsOf(flags);
const configOf = (argv: string[]) => {
  const p = parseFlags(argv, specs);
  return parseConfig(configFromFlags(flags, p.flags, p.given));
};

test("the router's flags are read from its config schema, each once, with the schema's defaults", () => {
  assert.ok(flags.length >= 55, `${flags.length} flags`);
  assert.equal(new Set(flags.map((f) => f.name)).size, flags.length);
  const defaults = parseConfig({});
  assert.equal(specs["max-attempts"]!.default, defaults.retry.maxAttempts);
  assert.equal(specs["max-attempts"]!.max, 10);
  assert.equal(specs["session-idle-timeout"]!.default, "30m");
  assert.equal(defaults.session.idleTimeout, 30 * 60_000);
  assert.equal(specs["max-body-size"]!.default, "16MiB");
  assert.equal(specs.port!.default, defaults.port);
  assert.equal(specs["session-header"]!.default, defaults.session.header);
});

test("each router flag sets the config field that declares it", () => {
  const c = configOf([
    "--backend=http://e0:8000",
    "--backend=http://e1:8000#0.25",
    "--max-attempts=5",
    "--session-idle-timeout=10m",
    "--no-session-infer",
    "--max-body-size=1MiB",
    "--tokenizer-dir=m=/models/m",
    "--kv-events-port=5557",
    "--kv-events-by-index",
    "--cache-server-events=tcp://cache:5600",
    "--cache-server-chunk-tokens=128",
    "--discovery-file=engines.yaml",
    "--k8s-resync=1m",
    "--peers-bind=tcp://*:5590",
    "--peer=tcp://r1:5590",
    "--predictive-tp=2",
    "--slo-ttft-ms=500",
    "--otlp-endpoint=http://collector:4318",
    "--epp-port=9002",
  ]);
  assert.deepEqual(
    c.backends.map((b) => [b.url, b.weight]),
    [
      ["http://e0:8000", 1],
      ["http://e1:8000", 0.25],
    ],
  );
  assert.equal(c.retry.maxAttempts, 5);
  assert.equal(c.session.idleTimeout, 600_000);
  assert.equal(c.session.infer, false);
  assert.equal(c.limits.maxBodyBytes, 2 ** 20);
  assert.deepEqual(c.routing.tokenizers, { m: "/models/m" });
  assert.deepEqual(c.routing.kvEvents.derive, { port: 5557, byIndex: true });
  assert.equal(c.routing.cacheServers[0]!.name, "cache-server");
  assert.equal(c.routing.cacheServers[0]!.events, "tcp://cache:5600");
  assert.equal(c.routing.cacheServers[0]!.chunkTokens, 128);
  assert.equal(c.discovery.mode, "file", "a discovery file means file discovery");
  assert.equal(c.discovery.file, "engines.yaml");
  assert.equal(c.discovery.kubernetes.resyncInterval, 60_000);
  assert.deepEqual([c.peers.bind, c.peers.endpoints], ["tcp://*:5590", ["tcp://r1:5590"]]);
  assert.equal(c.predictive.tensorParallelSize, 2);
  assert.equal(c.slo.ttftMs, 500);
  assert.equal(c.tracing.otlpEndpoint, "http://collector:4318");
  assert.equal(c.epp.port, 9002);
});

test("a router flag's value is refused by its schema's bounds, naming the flag", () => {
  assert.throws(() => parseFlags(["--max-attempts", "11"], specs), /--max-attempts: must be <= 10/);
  assert.throws(() => parseFlags(["--policy", "nope"], specs), /--policy: expected/);
  assert.throws(() => configOf(["--backend", "http://e0:8000#-1"]), /--backend: http:\/\/e0:8000#-1: weight/);
  assert.throws(() => configOf(["--tokenizer-dir", "nodir"]), /--tokenizer-dir: nodir: expected MODEL=DIR/);
});

test("a cache server's or a derived KV-event flag without the flag it is part of is refused, naming both", () => {
  assert.throws(
    () => configOf(["--cache-server-replay", "tcp://cache:5601"]),
    /--cache-server-replay needs --cache-server-events/,
  );
  assert.throws(() => configOf(["--kv-events-by-index"]), /--kv-events-by-index needs --kv-events-port/);
});

test("--lora-adapter names a folder or a Hub repository; an entry with neither or both is refused", () => {
  const c = configOf([
    "--lora-adapter=support=/adapters/support-v2",
    "--lora-adapter=sql=hf:acme/sql-lora-r16",
  ]);
  assert.deepEqual(c.lora!.adapters, [
    { name: "support", path: "/adapters/support-v2" },
    { name: "sql", hub: "acme/sql-lora-r16" },
  ]);
  assert.throws(() => configOf(["--lora-adapter=nosource"]), /NAME=\/folder or NAME=hf:ORG\/REPO/);
  assert.throws(() => configOf(["--lora-adapter=x=hf:not a repo"]), /Hub repository id/);
  // no . or .. segment: the engines resolve a Hub id as a path first
  assert.throws(() => configOf(["--lora-adapter=x=hf:a/.."]), /Hub repository id/);
  assert.throws(
    () => parseConfig({ lora: { adapters: [{ name: "x", path: "/a", hub: "o/r" }] } }),
    /one of them/,
  );
  assert.throws(() => parseConfig({ lora: { adapters: [{ name: "x" }] } }), /one of them/);
});
