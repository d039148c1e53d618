// Ingress step two (ingress.ts): the body, as the endpoint table says. A JSON body is read whole
// (bounded), parsed once (large ones on a worker thread) and validated; a multipart upload streams
// through, only its head read to find the `model` field; a route without a body forwards nothing. The
// tenant's reservation taken at the headers is then checked against the bytes read.
import { Readable } from "node:stream";
import { HttpError } from "../../http/errors.js";
import { bodyTooLarge, parseJsonObjectOffLoop } from "../../http/body.js";
import { promptEstimate, type RouterGate } from "../../tenancy/router-gate.js";
import type { RouterConfig } from "../config/config.js";
import type { DeadlineQueue } from "../dataplane/deadlines.js";
import { readRequestBody } from "./body.js";
import type { Body, Passage } from "./passage.js";

const MULTIPART_SNIFF_BYTES = 64 * 1024;
const EMPTY = Buffer.alloc(0);
const MODEL_FIELD = /name="model"\r\n(?:[^\r\n]+\r\n)*\r\n([^\r\n]*)\r\n/;
const NUMERIC_FIELDS = ["max_tokens", "max_completion_tokens", "n", "temperature", "top_p", "seed"];

/** What reading a body needs: the limits, the shared coarse timer (idle timeout), the tenancy gate. */
export interface ReadBodyNeeds {
  config: () => RouterConfig;
  deadlines: DeadlineQueue;
  gate: Pick<RouterGate, "reserve">;
}

/** Cheap checks of the fields the router itself reads or that are wrong in an obvious way. */
export function validateFields(path: string, obj: Record<string, unknown>): void {
  if (obj.model !== undefined && typeof obj.model !== "string") {
    throw new HttpError(400, "`model` must be a string", "model");
  }
  if (obj.stream !== undefined && obj.stream !== null && typeof obj.stream !== "boolean") {
    throw new HttpError(400, "`stream` must be a boolean", "stream");
  }
  if (path === "/v1/chat/completions" && !Array.isArray(obj.messages)) {
    throw new HttpError(400, "`messages` must be an array of messages", "messages");
  }
  if (path === "/v1/completions") {
    const p = obj.prompt;
    if (typeof p !== "string" && !Array.isArray(p)) {
      throw new HttpError(
        400,
        "`prompt` must be a string, a list of strings or a list of token ids",
        "prompt",
      );
    }
  }
  for (const f of NUMERIC_FIELDS) {
    const v = obj[f];
    if (v !== undefined && v !== null && typeof v !== "number")
      throw new HttpError(400, `\`${f}\` must be a number`, f);
  }
}

export class ReadBody {
  constructor(private readonly d: ReadBodyNeeds) {}

  async run(p: Passage): Promise<void> {
    const req = p.req;
    if (p.ep.body === "multipart") p.body = await this.multipart(p);
    else if (p.ep.body === "none") p.body = await this.none(p);
    else {
      const body = await this.readJson(p);
      // large bodies are parsed on a worker thread (src/http/json-thread.ts)
      const parsed = parseJsonObjectOffLoop(req, body);
      const obj = parsed instanceof Promise ? await parsed : parsed;
      validateFields(p.path, obj);
      p.body = { model: obj.model as string | undefined, body, bytes: body.length, parsed: obj };
    }
    // the reservation taken at the headers checked against the body read (a chunked body declared
    // no length): a prompt over the tenant's budget is refused here, before it is routed
    if (p.admission) await this.d.gate.reserve(p.admission, promptEstimate(p.body.bytes));
  }

  /** The whole JSON body, bounded; a client stalling mid-body for limits.bodyIdleTimeout gets 408. */
  private readJson(p: Passage): Promise<Buffer> {
    const lim = this.d.config().limits;
    return readRequestBody(p.req, lim.maxBodyBytes, { queue: this.d.deadlines, ms: lim.bodyIdleTimeout });
  }

  /** A route without a body: a GET forwards none; a POST's bytes (if any) are read, bounded, and passed on. */
  private async none(p: Passage): Promise<Body> {
    if (p.req.method === "GET") {
      p.req.resume();
      return { model: undefined, body: EMPTY, bytes: 0 };
    }
    const body = await this.readJson(p);
    return { model: undefined, body, bytes: body.length };
  }

  private async multipart(p: Passage): Promise<Body> {
    const req = p.req;
    const ctype = String(req.headers["content-type"] ?? "");
    if (!ctype.toLowerCase().startsWith("multipart/form-data")) {
      throw new HttpError(415, `unsupported Content-Type '${ctype}': expected multipart/form-data`);
    }
    const limit = this.d.config().limits.maxBodyBytes;
    const declared = Number(req.headers["content-length"] ?? 0);
    if (declared > limit) throw bodyTooLarge(`request body of ${declared} bytes`, limit);
    const it = (req as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    const head: Buffer[] = [];
    let size = 0;
    let ended = false;
    let model: string | undefined;
    while (size < MULTIPART_SNIFF_BYTES) {
      const r = await it.next();
      if (r.done) {
        ended = true;
        break;
      }
      head.push(r.value);
      size += r.value.length;
      const m = MODEL_FIELD.exec(Buffer.concat(head).toString("latin1"));
      if (m) {
        model = Buffer.from(m[1]!, "latin1").toString("utf8");
        break;
      }
    }
    let sent = 0;
    async function* chunks(): AsyncGenerator<Buffer> {
      for (const c of head) {
        sent += c.length;
        yield c;
      }
      if (ended) return;
      while (true) {
        const r = await it.next();
        if (r.done) return;
        sent += r.value.length;
        if (sent > limit) throw bodyTooLarge("request body", limit);
        yield r.value;
      }
    }
    return {
      model,
      body: Readable.from(chunks(), { objectMode: false }),
      bytes: declared > 0 ? declared : size,
    };
  }
}
