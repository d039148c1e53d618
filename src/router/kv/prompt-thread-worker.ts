// The worker side of prompt-thread.ts: works out each prompt it is sent (prompt-work.ts) and answers
// the values as transferable arrays, in the order asked. A "configure" message (new tokenizer folders)
// drops the tokenizers loaded so far; a "load" message loads a model's tokenizer ahead of its prompts.
import { parentPort, workerData } from "node:worker_threads";
import { PromptWorkshop, type PromptAnswer, type PromptAsk } from "./prompt-work.js";

/** the tokenizer folders, and one slot: the id of the last message answered (ids grow, answered in order) */
export type ThreadData = { dirs: Record<string, string>; finished: Int32Array<SharedArrayBuffer> };

export type ThreadMessage =
  | { type: "ask"; ask: PromptAsk }
  | { type: "load"; id: number; generation: number; model: string; root: string | undefined }
  | { type: "configure"; dirs: Record<string, string> };

const data = workerData as ThreadData;
const shop = new PromptWorkshop(data.dirs);

parentPort!.on("message", (m: ThreadMessage) => {
  if (m.type === "configure") {
    shop.configure(m.dirs);
    return;
  }
  if (m.type === "load") {
    const tk = shop.tokenizer(m.model, m.root);
    parentPort!.postMessage({ id: m.id, generation: m.generation, tokens: tk ? undefined : null });
    Atomics.store(data.finished, 0, m.id);
    return;
  }
  let a: PromptAnswer;
  const began = performance.now();
  try {
    a = shop.work(m.ask);
    a.workMs = performance.now() - began;
  } catch (err) {
    a = { id: m.ask.id, generation: m.ask.generation, error: (err as Error).message };
  }
  const transfer: ArrayBuffer[] = [];
  if (a.tokens) transfer.push(a.tokens.buffer as ArrayBuffer);
  if (a.prefix) transfer.push(a.prefix.ids.buffer as ArrayBuffer);
  for (const h of a.hashes ?? []) transfer.push(h.ids.buffer as ArrayBuffer);
  for (const c of a.chunks ?? []) transfer.push(c.hashes.buffer as ArrayBuffer);
  parentPort!.postMessage(a, transfer);
  Atomics.store(data.finished, 0, m.ask.id);
});
