// A streaming client for the migration tests and bench/router/migration.ts: reads an SSE answer as it
// arrives and keeps what a check needs (the text, every event's kind, usage, [DONE]s, error events),
// with a progress count the caller can wait on (kill an engine once every stream is under way).

export interface StreamRead {
  status: number;
  /** the x-switchyard-route debug header: the engine the stream started on */
  route: string;
  text: string;
  /** output events seen so far (a token or a few each) */
  events: number;
  /** performance.now() when the request was sent, and when each output event was read */
  sent: number;
  at: number[];
  dones: number;
  errors: string[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | undefined;
  finish: string | null;
  /** ids of the events, all of which must be the same */
  ids: Set<string>;
  /** the `object` of the events (one kind of chunk per stream) */
  objects: Set<string>;
  /** token ids when the client asked for them */
  tokenIds: number[];
  /** the raw events after [DONE] or anything not `data:` JSON */
  oddities: string[];
  done: Promise<void>;
}

export function readStream(
  url: string,
  body: Record<string, unknown>,
  kind: "chat" | "completion",
): StreamRead {
  const r: StreamRead = {
    status: 0,
    route: "",
    text: "",
    events: 0,
    sent: performance.now(),
    at: [],
    dones: 0,
    errors: [],
    usage: undefined,
    finish: null,
    ids: new Set(),
    objects: new Set(),
    tokenIds: [],
    oddities: [],
    done: Promise.resolve(),
  };
  const path = kind === "chat" ? "/v1/chat/completions" : "/v1/completions";
  r.done = (async () => {
    const res = await fetch(`${url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-switchyard-debug": "1" },
      body: JSON.stringify({ ...body, stream: true }),
    });
    r.status = res.status;
    r.route = res.headers.get("x-switchyard-route") ?? "";
    const decoder = new TextDecoder();
    let carry = "";
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      carry += decoder.decode(chunk, { stream: true });
      let cut: number;
      while ((cut = carry.indexOf("\n\n")) >= 0) {
        const ev = carry.slice(0, cut);
        carry = carry.slice(cut + 2);
        if (ev.startsWith(":")) continue;
        if (!ev.startsWith("data: ")) {
          r.oddities.push(ev);
          continue;
        }
        const data = ev.slice(6);
        if (data === "[DONE]") {
          r.dones++;
          continue;
        }
        if (r.dones > 0) r.oddities.push(`after [DONE]: ${data}`);
        const doc = JSON.parse(data) as {
          id?: string;
          object?: string;
          error?: { message: string };
          usage?: StreamRead["usage"] | null;
          choices?: Array<{
            text?: string;
            delta?: { content?: string };
            finish_reason?: string | null;
            token_ids?: number[] | null;
          }>;
        };
        if (doc.error) {
          r.errors.push(doc.error.message);
          continue;
        }
        if (doc.id) r.ids.add(doc.id);
        if (doc.object) r.objects.add(doc.object);
        if (doc.usage) r.usage = doc.usage;
        for (const c of doc.choices ?? []) {
          const t = kind === "chat" ? c.delta?.content : c.text;
          if (t) {
            r.text += t;
            r.events++;
            r.at.push(performance.now());
          }
          if (c.token_ids) r.tokenIds.push(...c.token_ids);
          if (c.finish_reason) r.finish = c.finish_reason;
        }
      }
    }
  })();
  return r;
}
