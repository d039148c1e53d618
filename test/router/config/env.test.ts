// The environment variables the router honours are read with its config schema (parseConfig), as vLLM
// reads them: VLLM_API_KEY for the engines' key and PYTHONHASHSEED for their block hashes, each only
// where neither the file nor a flag sets the option.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseConfig } from "../../../src/router/index.js";

test("VLLM_API_KEY and PYTHONHASHSEED fill the engines' key and hash seed when nothing else sets them", () => {
  const cfg = parseConfig({}, { VLLM_API_KEY: "sk-engines", PYTHONHASHSEED: "42" });
  assert.equal(cfg.engineApiKey, "sk-engines");
  assert.equal(cfg.routing.hashSeed, "42");
});

test("a key or seed given in the config wins over the environment, and an empty variable counts as unset", () => {
  const cfg = parseConfig(
    { engineApiKey: "sk-file", routing: { hashSeed: "7" } },
    { VLLM_API_KEY: "sk-env", PYTHONHASHSEED: "42" },
  );
  assert.equal(cfg.engineApiKey, "sk-file");
  assert.equal(cfg.routing.hashSeed, "7");
  const none = parseConfig({}, { VLLM_API_KEY: "", PYTHONHASHSEED: "" });
  assert.equal(none.engineApiKey, undefined);
  assert.equal(none.routing.hashSeed, undefined);
});
