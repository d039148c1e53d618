// Reads a JSON request body with the same limits and messages as src/http/body.ts's readBody, but
// with plain 'data'/'end' listeners: the async-iterator version allocates an iterator and a promise
// per chunk, which showed up on the router's per-request profile.
import type { IncomingMessage } from "node:http";
import { HttpError } from "../http/errors.js";

const EMPTY = Buffer.alloc(0);

export function readRequestBody(req: IncomingMessage, limitBytes: number): Promise<Buffer> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > limitBytes) {
    req.resume();
    return Promise.reject(
      new HttpError(413, `request body of ${declared} bytes exceeds the limit of ${limitBytes} bytes`),
    );
  }
  return new Promise<Buffer>((resolve, reject) => {
    let first: Buffer | undefined;
    let more: Buffer[] | undefined;
    let size = 0;
    const cleanup = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limitBytes) {
        cleanup();
        req.resume();
        reject(new HttpError(413, `request body exceeds the limit of ${limitBytes} bytes`));
      } else if (first === undefined) first = chunk;
      else (more ??= [first]).push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(more ? Buffer.concat(more, size) : (first ?? EMPTY));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onClose = () => {
      cleanup();
      reject(new Error("client closed the connection before sending the whole body"));
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("close", onClose);
  });
}
