// The worker side of offload.ts: encodes what it is sent with the family's tokenizer (loaded here on
// first use, off the main thread) and answers the count and the first `keep` ids (a transferable
// Int32Array), or that it stopped: between chunks of the text it reads the stop flag the main thread
// raises once nobody waits for the answer.
import { setPriority } from "node:os";
import { parentPort, workerData } from "node:worker_threads";
import { familyTokenizerFor } from "./index.js";
import type { WorkerAnswer, WorkerAsk } from "./offload.js";

// Below the main thread: on Linux a nice value is per thread, and priority 0 here means this one.
// On a busy host the event loop (health answers, streams) then wins the CPU over this bulk work.
try {
  setPriority(0, 10);
} catch {
  // not permitted here: run at the process's priority
}

/** raised (1) by the main thread when the ask under way is no longer wanted; reset before each ask */
const stop = new Int32Array((workerData as { stop: SharedArrayBuffer }).stop);
const stopped = () => Atomics.load(stop, 0) !== 0;

const answer = (a: WorkerAnswer, transfer: ArrayBuffer[] = []) => parentPort!.postMessage(a, transfer);

parentPort!.on("message", (m: WorkerAsk) => {
  try {
    const r = familyTokenizerFor(m.family).countUnlessStopped(m.text, m.addSpecialTokens, m.keep, stopped);
    if (!r) {
      answer({ id: m.id, stopped: true });
      return;
    }
    const ids = Int32Array.from(r.ids);
    answer({ id: m.id, ids, count: r.count }, [ids.buffer]);
  } catch (err) {
    answer({ id: m.id, error: (err as Error).message });
  }
});
