// Pieces of vLLM's JSON answers that more than one server writes: the sim answers chats in vLLM's
// shape, and the router assembles the same shape when it answers a non-streamed request it streamed
// from its engines (migration). One definition keeps the two from drifting apart.

/** A chat answer's `message` as vLLM's ChatMessage dumps it (every field, nulls included). */
export function assistantMessage(content: string): Record<string, unknown> {
  return {
    role: "assistant",
    content,
    refusal: null,
    annotations: null,
    audio: null,
    function_call: null,
    tool_calls: [],
    reasoning_content: null,
  };
}
