// Error bodies in the format OpenAI clients and vLLM (v0.10.1+) use:
// {"error": {"message", "type", "param", "code": <HTTP status>}}.
// A stream whose headers went out ends with such a body as an event, then [DONE] (endStreamWithError).
import type { ServerResponse } from "node:http";
import { DONE_BYTES } from "../protocol/sse.js";
import { ERROR_CODES, SwitchyardError } from "../errors/index.js";

export type ErrorType =
  | "BadRequestError"
  | "NotFoundError"
  | "AuthenticationError"
  | "PermissionDeniedError"
  | "RateLimitError"
  | "RequestTooLargeError"
  | "UnsupportedMediaTypeError"
  | "InternalServerError"
  | "ServiceUnavailableError"
  | "GatewayTimeoutError"
  | "BadGatewayError"
  /** OpenAI's own type name, which vLLM's Responses API answers some errors with */
  | "invalid_request_error"
  /** vLLM's type for a refused LoRA load or unload request (serving_models) */
  | "InvalidUserInput";

const TYPE_BY_STATUS: Record<number, ErrorType> = {
  400: "BadRequestError",
  401: "AuthenticationError",
  403: "PermissionDeniedError",
  404: "NotFoundError",
  413: "RequestTooLargeError",
  415: "UnsupportedMediaTypeError",
  429: "RateLimitError",
  500: "InternalServerError",
  502: "BadGatewayError",
  503: "ServiceUnavailableError",
  504: "GatewayTimeoutError",
};

export class HttpError extends SwitchyardError {
  static override readonly code = ERROR_CODES.http;

  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
    readonly type: ErrorType = TYPE_BY_STATUS[status] ??
      (status >= 500 ? "InternalServerError" : "BadRequestError"),
  ) {
    super(message);
  }
}

export function errorBody(
  status: number,
  message: string,
  param: string | null = null,
  type?: string,
): string {
  return JSON.stringify({
    error: { message, type: type ?? TYPE_BY_STATUS[status] ?? "BadRequestError", param, code: status },
  });
}

export function sendError(res: ServerResponse, err: HttpError): void;
export function sendError(res: ServerResponse, status: number, message: string, param?: string | null): void;
export function sendError(
  res: ServerResponse,
  a: HttpError | number,
  message?: string,
  param: string | null = null,
): void {
  const e = typeof a === "number" ? new HttpError(a, message ?? "error", param) : a;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = errorBody(e.status, e.message, e.param, e.type);
  res.writeHead(e.status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    ...e.headers,
  });
  res.end(body);
}

/** Ends a stream whose headers went out with an error event, as vLLM does, then [DONE]. */
export function endStreamWithError(res: ServerResponse, status: number, message: string): void {
  if (res.writableEnded || res.destroyed) return;
  res.write(`data: ${errorBody(status, message)}\n\n`);
  res.end(DONE_BYTES);
}
