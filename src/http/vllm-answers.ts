// Pieces of vLLM's JSON answers that more than one server writes: the sim answers chats in vLLM's
// shape, and the router assembles the same shape when it answers a non-streamed request it streamed
// from its engines (migration). One definition keeps the two from drifting apart.
import { createHash } from "node:crypto";

/**
 * A chat answer's `message` as vLLM 0.32's ChatMessage dumps it: nulls included, `reasoning` (0.32's
 * name for reasoning_content), and no `tool_calls` key unless there are calls (the tool-call answer
 * adds it).
 */
export function assistantMessage(content: string): Record<string, unknown> {
  return {
    role: "assistant",
    content,
    refusal: null,
    annotations: null,
    audio: null,
    function_call: null,
    reasoning: null,
  };
}

let fingerprint: { key: string; value: string } | undefined;

/**
 * `system_fingerprint` as vLLM 0.32 writes it by default (--fingerprint-mode full):
 * `vllm-<version>[-tp<N>]-<8 hex of the engine's config hash>`. The hash here is of what the sim is
 * configured with, so it is stable per configuration as vLLM's is, not equal to vLLM's.
 */
export function systemFingerprint(version: string, tensorParallelSize: number, config: string): string {
  const key = `${version} ${tensorParallelSize} ${config}`;
  if (fingerprint?.key !== key) {
    const hash = createHash("sha256").update(config).digest("hex").slice(0, 8);
    const tp = tensorParallelSize > 1 ? `-tp${tensorParallelSize}` : "";
    fingerprint = { key, value: `vllm-${version}${tp}-${hash}` };
  }
  return fingerprint.value;
}
