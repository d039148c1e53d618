// The worker side of offload.ts: encodes what it is sent with the family's tokenizer (loaded here on
// first use, off the main thread) and answers the count and the first `keep` ids (a transferable
// Int32Array).
import { setPriority } from "node:os";
import { parentPort } from "node:worker_threads";
import { tokenizerFor } from "./index.js";

// Below the main thread: on Linux a nice value is per thread, and priority 0 here means this one.
// On a busy host the event loop (health answers, streams) then wins the CPU over this bulk work.
try {
  setPriority(0, 10);
} catch {
  // not permitted here: run at the process's priority
}

interface Ask {
  id: number;
  family: string;
  text: string;
  addSpecialTokens: boolean;
  keep: number;
}

parentPort!.on("message", (m: Ask) => {
  try {
    const all = tokenizerFor(m.family).encode(m.text, m.addSpecialTokens);
    const ids = Int32Array.from(all.length > m.keep ? all.slice(0, m.keep) : all);
    parentPort!.postMessage({ id: m.id, ids, count: all.length }, [ids.buffer]);
  } catch (err) {
    parentPort!.postMessage({ id: m.id, error: (err as Error).message });
  }
});
