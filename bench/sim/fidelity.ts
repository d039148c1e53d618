// The sim-fidelity benchmark: `switchyard sim` (a separate process, fixed seed) with single requests one
// at a time, the client's TTFT and TPOT and the sim's own TTFT beside the engine model's steps, held to
// the tolerance bench/support/sim-fidelity.ts sets out. Exits 1 outside the tolerance.
//   node dist/bench/sim/fidelity.js [--rounds 3]
import { pathToFileURL } from "node:url";
import { runBench } from "../../src/bench/run.js";
import { freePort, spawnCli, waitForHttp } from "../support/cli.js";
import { ABS_MS, FRONT_END_MS, REL, benchOptions, modelledTimes, simArgs } from "../support/sim-fidelity.js";

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const rounds = Number(argv.includes("--rounds") ? argv[argv.indexOf("--rounds") + 1] : 3);
  let failed = false;
  console.log("round | TTFT model / engine / client (ms) | TPOT model / client (ms) | within tolerance");
  for (let round = 1; round <= rounds; round++) {
    const port = await freePort();
    const args = simArgs(port);
    const sim = spawnCli(["sim", ...args]);
    try {
      await waitForHttp(`http://127.0.0.1:${port}/health`, 60_000, 200, sim);
      const [run] = await runBench(benchOptions(`http://127.0.0.1:${port}`, { numRequests: 6, warmup: 2 }), {
        warn: () => {},
      });
      const m = modelledTimes(args, run!.records);
      const engineTtft = run!.result.server?.mean_ttft_ms ?? NaN;
      const ok =
        Math.abs(m.tpot - m.wantTpot) <= m.wantTpot * REL + ABS_MS &&
        Math.abs(engineTtft - m.wantTtft) <= m.wantTtft * REL + ABS_MS &&
        m.ttft >= m.wantTtft * (1 - REL) &&
        m.ttft <= m.wantTtft + FRONT_END_MS;
      if (!ok) failed = true;
      console.log(
        `${round} | ${m.wantTtft.toFixed(1)} / ${engineTtft.toFixed(1)} / ${m.ttft.toFixed(1)} | ` +
          `${m.wantTpot.toFixed(2)} / ${m.tpot.toFixed(2)} | ${ok ? "yes" : "NO"}`,
      );
    } finally {
      await sim.stop();
    }
  }
  process.exit(failed ? 1 : 0);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
