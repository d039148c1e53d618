// `switchyard up` when it dies without a word, and when its ports are taken: kill -9 (or the OOM
// killer) runs no handler of its own, yet its engines and router must not live on holding their
// ports; and a stack started on a taken port must say which port and who holds it. Every socket the
// stack opens binds on --host. Real processes; the /proc checks run on Linux only.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { listenersOn } from "../../src/cli/ports.js";
import { spawnCli, upArgs, waitForHttp } from "../../bench/support/cli.js";

const linux = existsSync("/proc/net/tcp");

/** Pids whose parent is `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      // pid (comm) state ppid ...: comm may hold spaces, so read after its closing parenthesis
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** True while the process exists and is not a zombie. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen({ port, host: "127.0.0.1", exclusive: true }, () => s.close(() => resolve(true)));
  });
}

test(
  "up: kill -9 of up leaves no process and no bound port; every socket of the stack was bound on --host",
  { skip: !linux && "needs /proc" },
  async () => {
    const up = await upArgs(1, ["--model", "Qwen/Qwen2.5-0.5B-Instruct", "--host", "127.0.0.1"]);
    const kvBase = Number(up.args[up.args.indexOf("--kv-events-base-port") + 1]);
    const ports = [up.port, up.engineBase, kvBase, kvBase + 1000];
    const stack = spawnCli(up.args);
    let kids: number[] = [];
    try {
      await waitForHttp(`http://127.0.0.1:${up.port}/ready`, 60_000, 200, stack);
      // HTTP, KV PUB and replay: on 127.0.0.1, none on every interface
      for (const p of ports) {
        const ls = await listenersOn(p);
        assert.ok(ls.length > 0, `nothing listens on ${p}`);
        assert.deepEqual([...new Set(ls.map((l) => l.address))], ["127.0.0.1"], `port ${p}`);
      }
      kids = childrenOf(stack.child.pid!);
      assert.equal(kids.length, 2, "an engine and the router");
      stack.child.kill("SIGKILL");
      const t0 = Date.now();
      const deadline = t0 + 30_000; // a hang guard, not a timing
      for (;;) {
        const left = kids.filter(alive);
        const bound = [];
        for (const p of ports) if (!(await portFree(p))) bound.push(p);
        if (left.length === 0 && bound.length === 0) break;
        assert.ok(
          Date.now() < deadline,
          `still running: ${left.join(", ")}; still bound: ${bound.join(", ")}`,
        );
        await new Promise((r) => setTimeout(r, 100));
      }
      console.log(`up killed: its processes and ports were gone ${Date.now() - t0} ms later`);
    } finally {
      for (const k of kids.filter(alive)) process.kill(k, "SIGKILL");
      await stack.stop("SIGKILL");
    }
  },
);

test("up: a stack on a taken port fails before starting anything, naming the port and the process that holds it", async () => {
  const up = await upArgs(1, ["--model", "Qwen/Qwen2.5-0.5B-Instruct", "--host", "127.0.0.1"]);
  const kvBase = Number(up.args[up.args.indexOf("--kv-events-base-port") + 1]);
  // this process holds the first engine's KV-event PUB port, as a stack killed earlier would
  const holder = createServer();
  await new Promise<void>((r) => holder.listen({ port: kvBase, host: "127.0.0.1" }, () => r()));
  const stack = spawnCli(up.args);
  try {
    // SIGCONT changes nothing: stop() only waits for the exit then, under its hang guard
    const code = await stack.stop("SIGCONT");
    assert.equal(code, 2, stack.output().slice(-2000));
    const holderText = linux ? ` by pid ${process.pid} \\(` : "";
    assert.match(
      stack.output(),
      new RegExp(
        `port ${kvBase} \\(engine 0's KV-event PUB\\) on 127\\.0\\.0\\.1 is in use${holderText}.*--kv-events-base-port`,
      ),
    );
    // nothing was started: the engine's HTTP port is still free
    assert.equal(await portFree(up.engineBase), true);
  } finally {
    holder.close();
    await stack.stop("SIGKILL");
  }
});
