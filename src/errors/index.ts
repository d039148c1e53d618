// One base for every error the project throws, each class with a stable code an operator can search
// for and a caller can branch on, as undici gives every error `UndiciError` and a `UND_ERR_*` code. The
// message says what went wrong in words; the code says which kind of thing it is, and does not change
// when the words do. docs/operations.md lists the codes an operator meets and what to do about each.

/** The stable codes, one per kind of failure. */
export const ERROR_CODES = {
  /** a flag, config key or value is invalid, or two of them disagree */
  config: "SY_ERR_CONFIG",
  /** a file the operator named (trace, dataset, profiles, model or adapter folder) is unreadable or malformed */
  input: "SY_ERR_INPUT",
  /** a caller of the library passed a value outside what the function takes */
  invalidArgument: "SY_ERR_INVALID_ARGUMENT",
  /** bytes on a wire (KV events, the cache server's protocols, the picker's gRPC) break their format */
  protocol: "SY_ERR_PROTOCOL",
  /** a service or process this one talks to (an engine, Kubernetes, Redis, a worker) failed or did not answer */
  peer: "SY_ERR_PEER",
  /** a listening socket could not be bound or set up */
  bind: "SY_ERR_BIND",
  /** a tool or file the command needs is not installed where it looks */
  environment: "SY_ERR_ENVIRONMENT",
  /** a valid request for something this implementation does not do */
  unsupported: "SY_ERR_UNSUPPORTED",
  /** a bounded resource (LoRA slots, the adapter table) is full */
  capacity: "SY_ERR_CAPACITY",
  /** an HTTP answer with a status: the request was refused in its protocol's format */
  http: "SY_ERR_HTTP",
  /** work given up because nobody waits for it any more */
  cancelled: "SY_ERR_CANCELLED",
  /** a smoke check found the deployment not doing what it should */
  checkFailed: "SY_ERR_CHECK_FAILED",
  /** an internal rule was broken: a bug, worth a report with the message */
  invariant: "SY_ERR_INVARIANT",
} as const;

export type ErrorCode = (typeof ERROR_CODES)[keyof typeof ERROR_CODES];

/**
 * The base of every error class in the project. A subclass names its code once, as a static field;
 * each instance carries it as `code` (an own property, as Node's and undici's errors do).
 */
export abstract class SwitchyardError extends Error {
  /** the code every instance of this class carries; each concrete class sets it */
  static readonly code: ErrorCode | "" = "";
  readonly code: string;
  constructor(message?: string, options?: ErrorOptions) {
    super(message, options);
    this.code = (new.target as typeof SwitchyardError).code;
  }
}

/** A flag, config key or value is invalid. */
export class InvalidConfigError extends SwitchyardError {
  static override readonly code = ERROR_CODES.config;
}

/** A file the operator named cannot be read, or is not what it should be. */
export class InputFileError extends SwitchyardError {
  static override readonly code = ERROR_CODES.input;
}

/** A caller passed a value the function does not take. */
export class InvalidArgumentError extends SwitchyardError {
  static override readonly code = ERROR_CODES.invalidArgument;
}

/** Bytes on a wire break their format. */
export class WireFormatError extends SwitchyardError {
  static override readonly code = ERROR_CODES.protocol;
}

/** A service this process talks to failed, answered an error, or did not answer in time. */
export class PeerError extends SwitchyardError {
  static override readonly code = ERROR_CODES.peer;
}

/** A listening socket could not be bound or set up. */
export class BindError extends SwitchyardError {
  static override readonly code = ERROR_CODES.bind;
}

/** A tool or file the command needs is missing. */
export class EnvironmentError extends SwitchyardError {
  static override readonly code = ERROR_CODES.environment;
}

/** Something this implementation does not do. */
export class UnsupportedError extends SwitchyardError {
  static override readonly code = ERROR_CODES.unsupported;
}

/** A bounded resource is full. */
export class CapacityError extends SwitchyardError {
  static override readonly code = ERROR_CODES.capacity;
}

/** Work given up because nobody waits for it any more (a client went away, the router cut an attempt). */
export class CancelledError extends SwitchyardError {
  static override readonly code = ERROR_CODES.cancelled;
}

/** An internal rule was broken: a bug. */
export class InvariantError extends SwitchyardError {
  static override readonly code = ERROR_CODES.invariant;
}
