// The workload shapes routing is compared on, once: bench/routing/vs-peers.ts sends them live through
// each router to four sims, bench/routing/vs-peers-virtual.ts runs them in the fleet simulator on the
// same engines (4 × L4, Llama-3.1-8B, 16k context), so the two orderings of policies can be compared.
// Each shape is a typed value; the live bench renders it as `switchyard bench` flags.

export type Shape =
  | {
      kind: "shared-prefix";
      /** groups × prompts sharing a system prompt (default 6 prompts, 3,000 + 600 tokens, 64 output) */
      groups: number;
      /** Poisson arrivals, req/s */
      qps: number;
      /** prompts per group (6), each group's shared prompt (3,000 tokens) and each question (600) */
      promptsPerGroup?: number;
      systemPromptLen?: number;
      questionLen?: number;
    }
  | { kind: "multi-round-qa"; users: number }
  | {
      kind: "agentic";
      /**
       * the agent preset (src/workload/agentic.ts): b2b (5k-token starts, 2k shared, 600 tokens a turn)
       * or fan-out (6k starts, every turn forking four sub-agents at once)
       */
      preset: "b2b" | "fan-out";
      sessions: number;
      /** each answer's tokens (the preset's 1,000 would make one live run take ten minutes) */
      outputTokens: number;
      /** Poisson arrivals of turns, req/s (a session's next turn waits for its answer and its tool) */
      qps: number;
    }
  | {
      kind: "trace";
      /** a Mooncake FAST'25 trace file's name (FAST25-release/traces), looked up in --trace-dir */
      file: string;
      /** the window, trace seconds, and the replay speed */
      startS: number;
      durationS: number;
      speed: number;
      /** tokens per hash block (64: CPU-sized sims) and each answer's max_tokens at most */
      blockTokens: number;
      maxOutput: number;
    };

export const SHAPES: Record<string, Shape> = {
  "kv-pressure": { kind: "shared-prefix", groups: 40, qps: 6 },
  "kv-pressure-light": { kind: "shared-prefix", groups: 40, qps: 4 },
  "kv-half": { kind: "shared-prefix", groups: 20, qps: 6 },
  // llm-d's multi-tenant shape (150 tenants, 4,500-token system prompts and 1,500-token questions on 8
  // engines whose KV holds 1.19M tokens: the prefixes fill 57% of it) scaled to the 4 × L4 fleet (146k
  // tokens): 18 tenants fill the same share; answers of 64 tokens rather than 256, as the other shapes,
  // so that a run takes a minute. 3 req/s is past round-robin's capacity (1.9 req/s in the fleet
  // simulator) and about what the cache-aware policies serve: where routing decides most. As a scenario:
  // examples/scenarios/multi-tenant-4xl4.yaml
  "multi-tenant": {
    kind: "shared-prefix",
    groups: 18,
    promptsPerGroup: 12,
    systemPromptLen: 4500,
    questionLen: 1500,
    qps: 3,
  },
  "multi-round-qa-16": { kind: "multi-round-qa", users: 16 },
  "multi-round-qa-32": { kind: "multi-round-qa", users: 32 },
  "multi-round-qa-64": { kind: "multi-round-qa", users: 64 },
  // 48 sessions of 3 turns; at 1.2 req/s their contexts (5k-9k tokens each) held by paused sessions
  // and running ones overfill the fleet's KV (4 × 36k tokens), so where a resumed turn goes matters
  "agentic-b2b": { kind: "agentic", preset: "b2b", sessions: 48, outputTokens: 128, qps: 1.2 },
  // 32 orchestrators, each turn answered then forked into four sub-agents resending its 7k-12k context
  // at once (16 requests a session); 128-token answers as above
  "agentic-fan-out": { kind: "agentic", preset: "fan-out", sessions: 32, outputTokens: 128, qps: 1.5 },
  // Kimi's conversation traffic (Mooncake's FAST'25 conversation trace, docs/load-generator.md): its first five
  // minutes (918 requests, 3.1 req/s), 64 tokens per hash block (prompts of 1,700 tokens on average, up
  // to 15k), answers capped at 48 tokens; at the trace's rate and at 1.5 times it
  "trace-conversation": {
    kind: "trace",
    file: "conversation_trace.jsonl",
    startS: 0,
    durationS: 300,
    speed: 1,
    blockTokens: 64,
    maxOutput: 48,
  },
  "trace-conversation-1.5x": {
    kind: "trace",
    file: "conversation_trace.jsonl",
    startS: 0,
    durationS: 300,
    speed: 1.5,
    blockTokens: 64,
    maxOutput: 48,
  },
};

export function shapeOf(name: string): Shape {
  const s = SHAPES[name];
  if (!s) throw new Error(`unknown shape ${name} (known: ${Object.keys(SHAPES).join(", ")})`);
  return s;
}

/** the shape as `switchyard bench` flags; a trace shape's file is looked up in `traceDir` */
export function benchArgs(s: Shape, traceDir = "traces"): string[] {
  switch (s.kind) {
    case "shared-prefix":
      return [
        ...["--workload", "shared-prefix", "--num-groups", String(s.groups)],
        ...["--prompts-per-group", String(s.promptsPerGroup ?? 6)],
        ...["--system-prompt-len", String(s.systemPromptLen ?? 3000)],
        ...["--question-len", String(s.questionLen ?? 600), "--output-len", "64", "--ignore-eos"],
        ...["--qps", String(s.qps), "--arrival", "poisson"],
      ];
    case "multi-round-qa":
      return [
        ...["--workload", "multi-round-qa", "--num-users", String(s.users), "--num-rounds", "4"],
        ...["--shared-system-prompt", "1000", "--user-history-prompt", "4000", "--answer-len", "100"],
        ...["--concurrency", String(s.users), "--ignore-eos"],
      ];
    case "agentic":
      return [
        ...["--workload", "agentic", "--agentic-preset", s.preset, "--agentic-sessions", String(s.sessions)],
        ...["--output-len", String(s.outputTokens), "--ignore-eos"],
        ...["--qps", String(s.qps), "--arrival", "poisson"],
      ];
    case "trace":
      return [
        ...["--workload", "trace", "--trace-file", `${traceDir}/${s.file}`],
        ...["--trace-start", String(s.startS), "--trace-duration", String(s.durationS)],
        ...["--trace-speed", String(s.speed), "--trace-block-tokens", String(s.blockTokens)],
        ...["--trace-max-output", String(s.maxOutput), "--ignore-eos"],
      ];
  }
}
