// What migration bookkeeping costs per streamed token: vLLM-format chunks (one token each, token ids
// included, as the router asks for them) relayed through a MigrationLedger, against the same bytes
// merely copied (the floor of any per-chunk work). CPU time in this process, so a loaded machine
// changes the figures less than an end-to-end run; reported as µs per chunk, interleaved rounds.
//   node --import tsx bench/micro/migration-ledger.ts [--chunks 256] [--streams 2000] [--rounds 5]
import { MigrationLedger } from "../../src/router/migration/ledger.js";
import { median as med } from "../../src/workload/stats.js";

const argv = process.argv.slice(2);
const get = (f: string, d: string) => (argv.includes(f) ? argv[argv.indexOf(f) + 1]! : d);
const chunks = Number(get("--chunks", "256"));
const streams = Number(get("--streams", "2000"));
const rounds = Number(get("--rounds", "5"));

function stream(kind: "chat" | "completion"): Buffer[] {
  const out: Buffer[] = [];
  const head = `"id":"cmpl-0123456789abcdef0123456789abcdef","created":1795355366,"model":"meta-llama/Llama-3.1-8B-Instruct"`;
  for (let i = 0; i < chunks; i++) {
    const id = 1000 + i;
    const ev =
      kind === "chat"
        ? `data: {${head},"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" word${i}"},"logprobs":null,"finish_reason":null,"token_ids":[${id}]}]}\n\n`
        : `data: {${head},"object":"text_completion","choices":[{"index":0,"text":" word${i}","logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":${i === 0 ? "[1,2,3,4,5,6,7,8]" : "null"},"token_ids":[${id}]}],"usage":null}\n\n`;
    out.push(Buffer.from(ev));
  }
  out.push(Buffer.from("data: [DONE]\n\n"));
  return out;
}

function run(kind: "chat" | "completion", ledger: boolean): number {
  const s = stream(kind);
  let sink = 0;
  const t0 = process.cpuUsage();
  for (let k = 0; k < streams; k++) {
    const l = ledger ? new MigrationLedger(kind, true) : undefined;
    for (const c of s) {
      // what the relay does without a ledger: hand the chunk on; with one: relay it, then encode
      const b = l ? Buffer.from(l.relay(c)) : c;
      sink += b.length;
    }
  }
  const t = process.cpuUsage(t0);
  if (sink === 0) console.log("");
  return (t.user + t.system) / (streams * (chunks + 1));
}

for (const kind of ["completion", "chat"] as const) {
  const base: number[] = [];
  const led: number[] = [];
  for (let r = 0; r < rounds; r++) {
    base.push(run(kind, false));
    led.push(run(kind, true));
  }
  console.log(
    `${kind.padEnd(10)} ${chunks} chunks × ${streams} streams, ${rounds} rounds: ledger ${med(led).toFixed(2)} µs/chunk (CPU), bare ${med(base).toFixed(2)} µs/chunk; ${(med(led) * chunks).toFixed(0)} µs per ${chunks}-token stream`,
  );
}
