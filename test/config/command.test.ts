// A command's options from its schema: --help prints the schema's flags, argv is parsed with them, a
// field's environment variable stands in for a flag not given, and surplus arguments are refused.
import { test } from "node:test";
import assert from "node:assert/strict";
import { z } from "zod";
import { CliError } from "../../src/config/args.js";
import { commandFlags, parseCommandFlags } from "../../src/config/command.js";
import { flag } from "../../src/config/schema-flags.js";
import { parseSimArgs } from "../../src/sim/config/config.js";

const options = commandFlags(
  z.object({
    tries: flag(z.number().int().min(1).max(9).default(3), { flag: "tries", help: "attempts" }),
    key: flag(z.string().optional(), { flag: "api-key", env: "TEST_KEY", help: "bearer token" }),
    slow: flag(z.number().min(0).optional(), { flag: "slow", env: "TEST_SLOW", help: "seconds" }),
  }),
);

test("a command's flags come typed and defaulted from its schema", () => {
  const parsed = parseCommandFlags(["--tries", "5"], "usage: t", options, { env: {} })!;
  assert.equal(parsed.flags.tries, 5);
  assert.equal(parsed.flags["api-key"], undefined);
  assert.deepEqual([...parsed.given], ["tries"]);
  assert.throws(() => parseCommandFlags(["--tries", "10"], "usage: t", options, { env: {} }), CliError);
});

test("a field's environment variable stands in for its flag, and the flag given wins", () => {
  const env = { TEST_KEY: "from-env", TEST_SLOW: "1.5" };
  const fromEnv = parseCommandFlags([], "usage: t", options, { env })!;
  assert.equal(fromEnv.flags["api-key"], "from-env");
  assert.equal(fromEnv.flags.slow, 1.5);
  assert.equal(fromEnv.given.size, 0);
  const fromFlag = parseCommandFlags(["--api-key", "flag"], "usage: t", options, { env })!;
  assert.equal(fromFlag.flags["api-key"], "flag");
  assert.throws(() => parseCommandFlags([], "usage: t", options, { env: { TEST_SLOW: "-1" } }), /--slow/);
});

test("arguments beyond the command's positionals are refused in its own words", () => {
  assert.throws(() => parseCommandFlags(["x"], "usage: t", options, { env: {} }), /unexpected argument 'x'/);
  assert.throws(
    () =>
      parseCommandFlags(["a", "b"], "usage: t", options, {
        env: {},
        maxPositionals: 1,
        tooMany: (p) => `one URL, got ${p.length}`,
      }),
    /one URL, got 2/,
  );
});

test("the sim reads VLLM_API_KEY and PYTHONHASHSEED through its schema, an empty PYTHONHASHSEED being a seed as in vLLM", () => {
  const model = "Qwen/Qwen2.5-0.5B-Instruct";
  const fromEnv = parseSimArgs([model], { VLLM_API_KEY: "k", PYTHONHASHSEED: "" });
  assert.equal(fromEnv.apiKey, "k");
  assert.equal(fromEnv.hashSeed, "");
  const flags = parseSimArgs([model, "--api-key", "f", "--hash-seed", "7"], {
    VLLM_API_KEY: "k",
    PYTHONHASHSEED: "3",
  });
  assert.equal(flags.apiKey, "f");
  assert.equal(flags.hashSeed, "7");
  const none = parseSimArgs([model], { VLLM_API_KEY: "" });
  assert.equal(none.apiKey, undefined);
  assert.equal(none.hashSeed, parseSimArgs([model], {}).hashSeed);
});
