// The type of a parsed answer that a test reads field by field (an engine's JSON, an SSE chunk, a body
// with vLLM's extra parameters for the official client): a wrong path fails its assertion, which is
// the check, so a declared shape for every answer would add nothing but lines.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any;
