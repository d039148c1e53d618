// The worker side of json-thread.ts: decode, check and parse one body; answer the object or the error.
import { setPriority } from "node:os";
import { parentPort } from "node:worker_threads";
import { parseJsonText } from "./body.js";
import { HttpError } from "./errors.js";

// Below the main thread: on Linux a nice value is per thread, and priority 0 here means this one.
// On a busy host the event loop (health answers, streams) then wins the CPU over this bulk work.
try {
  setPriority(0, 10);
} catch {
  // not permitted here: run at the process's priority
}

const utf8 = new TextDecoder();

parentPort!.on("message", (m: { id: number; bytes: Uint8Array }) => {
  try {
    parentPort!.postMessage({ id: m.id, value: parseJsonText(utf8.decode(m.bytes)) });
  } catch (err) {
    const status = err instanceof HttpError ? err.status : 500;
    parentPort!.postMessage({ id: m.id, status, message: (err as Error).message });
  }
});
