// The event-loop delay of a process a benchmark starts (a router, a sim), without changing that
// process: loaded with `node --import <this file>` (NODE_OPTIONS), it appends one line a second to the
// file named by SWITCHYARD_LOOP_PROBE — the wall-clock time, and the p99 and max delay of that second
// in ms — so that the benchmark can tell a process starved of CPU from one deciding late.
// `loopDelays` reads the lines back for a window of time.
import { appendFileSync, readFileSync } from "node:fs";
import { monitorEventLoopDelay } from "node:perf_hooks";

export interface LoopDelay {
  /** the largest p99 of a second in the window, ms */
  p99: number;
  /** the largest delay seen in the window, ms */
  max: number;
}

const file = process.env.SWITCHYARD_LOOP_PROBE;
if (file) {
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  setInterval(() => {
    appendFileSync(
      file,
      `${Date.now()} ${(h.percentile(99) / 1e6).toFixed(1)} ${(h.max / 1e6).toFixed(1)}\n`,
    );
    h.reset();
  }, 1000).unref();
}

/** The worst second of a probe file between two wall-clock times (NaN without a line in it). */
export function loopDelays(path: string, from: number, to: number): LoopDelay {
  let p99 = NaN;
  let max = NaN;
  let text = "";
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return { p99, max };
  }
  for (const line of text.split("\n")) {
    const [t, p, m] = line.split(" ").map(Number);
    if (!(t! >= from && t! <= to)) continue;
    p99 = Number.isNaN(p99) ? p! : Math.max(p99, p!);
    max = Number.isNaN(max) ? m! : Math.max(max, m!);
  }
  return { p99, max };
}
