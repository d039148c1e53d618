// `dataset`: prompts from a file. Accepted formats:
//  - JSONL, one object a line: {"prompt": "...", "output_len"?: N, "system"?: "..."} or
//    {"messages": [{"role","content"}...], "output_len"?: N} (user turns replayed in order, answers live);
//  - ShareGPT JSON (an array of {"conversations": [{"from": "human"|"gpt", "value"}...]}), where, as in
//    vllm bench, the first human turn is the prompt and the first gpt reply sets the output length.
// Parsing is separate from generation so that generation stays pure.
import { makeRng, shuffle } from "../random/rng.js";
import type { Session, Turn, Workload } from "./types.js";
import { InputFileError } from "../errors/index.js";

export interface DatasetEntry {
  system: string | null;
  /** user turns in order */
  users: string[];
  /** output tokens per turn from the file, or null */
  outputLens: (number | null)[];
}

export interface DatasetOptions {
  seed: number;
  /** max_tokens for every turn; overrides the file */
  outputLen: number | null;
  /** used when neither the file nor --output-len gives one */
  defaultOutputLen: number;
  shuffle: boolean;
}

/** Rough token count of arbitrary text (about 4 characters a token for English); the server's usage wins. */
export function estimateTokens(text: string): number {
  return Math.max(1, Math.round(text.length / 4));
}

function str(v: unknown): string | null {
  return typeof v === "string" ? v : null;
}

function fromObject(o: Record<string, unknown>): DatasetEntry | null {
  const outLen = typeof o.output_len === "number" ? o.output_len : null;
  const prompt = str(o.prompt);
  if (prompt !== null) return { system: str(o.system), users: [prompt], outputLens: [outLen] };
  if (Array.isArray(o.messages)) {
    let system: string | null = null;
    const users: string[] = [];
    for (const m of o.messages as Record<string, unknown>[]) {
      const c = str(m?.content);
      if (c === null) continue;
      if (m.role === "system" && users.length === 0) system = c;
      else if (m.role === "user") users.push(c);
    }
    return users.length ? { system, users, outputLens: users.map(() => outLen) } : null;
  }
  if (Array.isArray(o.conversations)) {
    const conv = o.conversations as Record<string, unknown>[];
    const human = conv.find((c) => c?.from === "human" || c?.role === "user");
    const gpt = conv.find((c) => c?.from === "gpt" || c?.role === "assistant");
    const prompt = str(human?.value) ?? str(human?.content);
    if (prompt === null) return null;
    const reply = str(gpt?.value) ?? str(gpt?.content);
    return { system: null, users: [prompt], outputLens: [reply !== null ? estimateTokens(reply) : outLen] };
  }
  return null;
}

/** Parses a dataset file's text; skips entries it cannot use and counts them. */
export function parseDataset(text: string): { entries: DatasetEntry[]; skipped: number } {
  const entries: DatasetEntry[] = [];
  let skipped = 0;
  const take = (v: unknown) => {
    const e =
      v && typeof v === "object" && !Array.isArray(v) ? fromObject(v as Record<string, unknown>) : null;
    if (e) entries.push(e);
    else skipped++;
  };
  const trimmed = text.trimStart();
  if (trimmed.startsWith("[")) {
    const arr = JSON.parse(trimmed) as unknown;
    if (!Array.isArray(arr)) throw new InputFileError("dataset: expected a JSON array");
    for (const v of arr) take(v);
  } else {
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      try {
        take(JSON.parse(line));
      } catch {
        skipped++;
      }
    }
  }
  return { entries, skipped };
}

export function datasetWorkload(entries: readonly DatasetEntry[], o: DatasetOptions): Workload {
  const multi = entries.some((e) => e.users.length > 1);
  function* sessions(): Generator<Session> {
    const order = entries.map((_, i) => i);
    if (o.shuffle) shuffle(order, makeRng(o.seed, "dataset"));
    let index = 0;
    for (const k of order) {
      const e = entries[k]!;
      const turns: Turn[] = e.users.map((u, r) => ({
        text: u,
        tokens: estimateTokens(u),
        maxTokens: Math.max(1, o.outputLen ?? e.outputLens[r] ?? o.defaultOutputLen),
      }));
      yield {
        id: `d${k}`,
        index: index++,
        system: e.system,
        systemTokens: e.system !== null ? estimateTokens(e.system) : 0,
        turns,
        carriesHistory: e.users.length > 1,
      };
    }
  }
  return {
    name: "dataset",
    sessions: { [Symbol.iterator]: sessions },
    naturalRequests: entries.reduce((n, e) => n + e.users.length, 0),
    defaultEndpoint: multi ? "chat" : "completions",
    sessionHeader: multi,
  };
}
