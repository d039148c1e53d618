// Server-sent events pieces shared by the streaming handlers.

export const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
  connection: "keep-alive",
} as const;

export const DONE_EVENT = "data: [DONE]\n\n";
