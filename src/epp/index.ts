// The endpoint picker's public surface: the server and the interface its host (the router) fills.
export { EppServer, EXT_PROC_SERVICE, type EppServerOptions } from "./server.js";
export type {
  Decided,
  EppSettings,
  IssuedRequest,
  PathRule,
  RequestMetrics,
  RoutingHost,
  Slot,
} from "./types.js";
