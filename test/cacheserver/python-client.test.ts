import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { startCacheServer } from "../../src/cacheserver/server.js";
import { missingTool } from "../deploy/tools.js";

// under `npm test` or CI a missing python3 is a failure, not a skip
const py = spawnSync("python3", ["--version"]).status === 0;

// The .py file lives next to the TS sources; the compiled test under dist/ reaches back to it.
function scriptPath(): string {
  const here = fileURLToPath(import.meta.url);
  const root = here.includes("/dist/")
    ? here.slice(0, here.indexOf("/dist/"))
    : here.slice(0, here.indexOf("/test/"));
  return `${root}/test/cacheserver/lm_client.py`;
}

test(
  "a standard-library Python client round-trips PUT/GET/EXIST/HEALTH and 32 MiB objects",
  { skip: !py && missingTool("no python3") },
  async () => {
    const srv = await startCacheServer({ host: "127.0.0.1", port: 0, maxMemoryBytes: 2 ** 28 });
    try {
      const child = spawn("python3", [scriptPath(), "127.0.0.1", String(srv.port)], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      child.stdout.on("data", (b: Buffer) => (out += b.toString()));
      child.stderr.on("data", (b: Buffer) => (out += b.toString()));
      const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
      assert.equal(code, 0, out);
      assert.match(out, /all checks passed/);
      assert.equal((out.match(/^ok: /gm) ?? []).length, 8, out);
    } finally {
      await srv.close();
    }
  },
);
