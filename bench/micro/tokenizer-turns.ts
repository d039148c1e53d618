// How long the event loop is held while several long prompts are tokenised at once (a burst of long
// prompts reaching a router): a 1 ms interval timer records the gaps between its runs while N prompts
// of text the piece cache has never seen (made-up words) are encoded with encodeAsync, all started in
// the same turn, and a MessageChannel ping sent from that timer records how late a message is heard.
// Reports the gaps (what any I/O waits for) and the time to encode them all.
// Run: npm run bench -- micro/tokenizer-turns   (or: node --import tsx bench/micro/tokenizer-turns.ts [prompts] [words])
import { tokenizerFor } from "../../src/tokenizer/index.js";
import { mulberry32 } from "../../src/random/rng.js";
import { percentileSorted } from "../../src/workload/stats.js";

const prompts = Number(process.argv[2] ?? 8);
const words = Number(process.argv[3] ?? 8000);
const tok = tokenizerFor("llama3");

const rand = mulberry32(12345);
const word = () => {
  let w = "";
  const n = 2 + Math.floor(rand() * 8);
  for (let k = 0; k < n; k++) w += String.fromCharCode(97 + Math.floor(rand() * 26));
  return w;
};
const text = () => Array.from({ length: words }, word).join(" ");

tok.encode("warm the tables");
console.log(`${prompts} prompts of ${words} made-up words each, encoded at once (llama3), 4 rounds:`);
for (let round = 0; round < 4; round++) {
  const texts = Array.from({ length: prompts }, text);
  const { port1, port2 } = new MessageChannel();
  const heard: number[] = [];
  port2.on("message", (sent: number) => heard.push(performance.now() - sent));
  const gaps: number[] = [];
  let last = performance.now();
  const timer = setInterval(() => {
    const t = performance.now();
    gaps.push(t - last);
    last = t;
    port1.postMessage(t);
  }, 1);
  const t0 = performance.now();
  await Promise.all(texts.map((t) => tok.encodeAsync(t, false)));
  const ms = performance.now() - t0;
  clearInterval(timer);
  await new Promise((r) => setTimeout(r, 20));
  port1.close();
  port2.close();
  gaps.sort((a, b) => a - b);
  heard.sort((a, b) => a - b);
  console.log(
    `round ${round + 1}: loop held p50 ${percentileSorted(gaps, 50).toFixed(1)} ms, p90 ${percentileSorted(gaps, 90).toFixed(1)}, max ${gaps.at(-1)!.toFixed(1)}; ` +
      `a message heard after p50 ${percentileSorted(heard, 50).toFixed(2)} ms, max ${heard.at(-1)!.toFixed(2)}; ` +
      `all ${prompts} encoded in ${ms.toFixed(0)} ms (${texts[0]!.length} characters each)`,
  );
}
