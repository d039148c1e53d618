// Flags declared on a zod schema: the field names the flag and its help, the schema gives its type,
// bounds and default, and the flags given become the partial config they stand for.
import { test } from "node:test";
import assert from "node:assert/strict";
import { z } from "zod";
import { CliError, parseFlags } from "../../src/config/args.js";
import { configFromFlags, flag, flagSpecsOf, schemaFlags } from "../../src/config/schema-flags.js";
import { duration, size } from "../../src/config/values.js";

const endpoint = z.string().regex(/^tcp:\/\//);
const schema = z.strictObject({
  port: flag(z.number().int().min(1).max(65535).default(8080), { flag: "port", help: "port" }),
  retry: z
    .strictObject({
      share: flag(z.number().min(0).max(1).default(0.2), { flag: "retry-share", help: "share" }),
      wait: flag(duration.default(30_000), { flag: "retry-wait", help: "wait", kind: "duration" }),
    })
    .prefault({}),
  body: flag(size.default(16 * 2 ** 20), { flag: "max-body", help: "body", kind: "size" }),
  mode: flag(z.enum(["a", "b", "file"]).default("a"), { flag: "mode", help: "mode" }),
  file: flag(z.string().optional(), { flag: "mode-file", help: "file", implies: { mode: "file" } }),
  infer: flag(z.boolean().default(true), { flag: "infer", help: "infer", negatable: true }),
  // one format, two fields: each field's flag is its own
  publish: flag(endpoint.optional(), { flag: "publish", help: "publish" }),
  peers: flag(z.array(endpoint).default([]), { flag: "peer", help: "peer" }),
  servers: z
    .array(
      z.strictObject({
        name: z.string(),
        events: flag(endpoint, { flag: "server-events", help: "events", implies: { name: "server" } }),
      }),
    )
    .default([]),
  dirs: flag(z.record(z.string(), z.string()).default({}), {
    flag: "dir",
    help: "MODEL=DIR",
    toConfig: (v) => Object.fromEntries((v as string[]).map((e) => e.split("="))),
  }),
});
const flags = schemaFlags(schema);
const specs = flagSpecsOf(flags);

test("a flag's type, bounds and default come from the schema field that declares it", () => {
  assert.deepEqual(specs.port, { type: "int", help: "port", min: 1, max: 65535, default: 8080 });
  assert.deepEqual(specs["retry-share"], { type: "number", help: "share", min: 0, max: 1, default: 0.2 });
  assert.deepEqual(specs["retry-wait"], { type: "string", help: "wait", default: "30s" });
  assert.deepEqual(specs["max-body"], { type: "size", help: "body", default: "16MiB" });
  assert.deepEqual(specs.mode, { type: "string", help: "mode", choices: ["a", "b", "file"], default: "a" });
  assert.deepEqual(specs.infer, { type: "boolean", help: "infer", negatable: true, default: true });
  assert.equal(specs.peer!.type, "list");
  assert.equal(specs.dir!.type, "list");
  assert.deepEqual(
    flags.map((f) => f.path.join(".")),
    [
      "port",
      "retry.share",
      "retry.wait",
      "body",
      "mode",
      "file",
      "infer",
      "publish",
      "peers",
      "servers.0.events",
      "dirs",
    ],
  );
});

test("the flags given become the partial config they stand for, and nothing else does", () => {
  const argv = [
    "--retry-wait",
    "5m",
    "--max-body",
    "1MiB",
    "--no-infer",
    "--peer",
    "tcp://a:1",
    "--peer",
    "tcp://b:1",
  ];
  const p = parseFlags(
    [...argv, "--server-events", "tcp://s:2", "--dir", "m=/x", "--mode-file", "f.yaml"],
    specs,
  );
  const c = configFromFlags(flags, p.flags, p.given);
  assert.deepEqual(c, {
    retry: { wait: "5m" },
    body: 2 ** 20,
    infer: false,
    peers: ["tcp://a:1", "tcp://b:1"],
    servers: [{ events: "tcp://s:2", name: "server" }],
    dirs: { m: "/x" },
    file: "f.yaml",
    mode: "file",
  });
  const parsed = schema.parse(c);
  assert.equal(parsed.retry.wait, 300_000);
  assert.equal(parsed.port, 8080, "a flag not given leaves the schema's default");
});

test("a flag given beside one it implies a value for keeps its own value", () => {
  const p = parseFlags(["--mode-file", "f.yaml", "--mode", "b"], specs);
  assert.deepEqual(configFromFlags(flags, p.flags, p.given), { mode: "b", file: "f.yaml" });
});

test("a flag's bounds are checked as it is read, naming the flag", () => {
  assert.throws(() => parseFlags(["--port", "0"], specs), /--port: must be >= 1/);
  assert.throws(() => parseFlags(["--retry-share", "1.5"], specs), /--retry-share: must be <= 1/);
  assert.throws(() => parseFlags(["--mode", "c"], specs), /--mode: expected a or b or file/);
});

test("a value its field cannot take is refused naming the flag", () => {
  const bad = schemaFlags(
    z.strictObject({
      n: flag(z.record(z.string(), z.number()).default({}), {
        flag: "n",
        help: "n",
        toConfig: () => {
          throw new Error("expected NAME=N");
        },
      }),
    }),
  );
  const p = parseFlags(["--n", "x"], flagSpecsOf(bad));
  assert.throws(
    () => configFromFlags(bad, p.flags, p.given),
    (e) => e instanceof CliError && /--n: expected NAME=N/.test(e.message),
  );
});

test("a flag declared twice in one schema is refused when the flags are read", () => {
  const twice = z.strictObject({
    a: flag(z.string().optional(), { flag: "x", help: "a" }),
    b: flag(z.string().optional(), { flag: "x", help: "b" }),
  });
  assert.throws(() => schemaFlags(twice), /--x is declared twice/);
});

test("a flag given without the flag it is part of is refused, naming both", () => {
  const parts = schemaFlags(
    z.strictObject({
      on: flag(z.string().optional(), { flag: "server", help: "on" }),
      rate: flag(z.number().optional(), { flag: "server-rate", help: "rate", needs: "server" }),
    }),
  );
  const p = parseFlags(["--server-rate", "3"], flagSpecsOf(parts));
  assert.throws(() => configFromFlags(parts, p.flags, p.given), /--server-rate needs --server/);
});
