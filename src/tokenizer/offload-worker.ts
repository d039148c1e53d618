// The worker side of offload.ts: encodes what it is sent with the family's tokenizer (loaded here on
// first use, off the main thread) and answers the ids as a transferable Int32Array.
import { parentPort } from "node:worker_threads";
import { tokenizerFor } from "./index.js";

parentPort!.on("message", (m: { id: number; family: string; text: string }) => {
  try {
    const ids = Int32Array.from(tokenizerFor(m.family).encode(m.text, false));
    parentPort!.postMessage({ id: m.id, ids }, [ids.buffer]);
  } catch (err) {
    parentPort!.postMessage({ id: m.id, error: (err as Error).message });
  }
});
