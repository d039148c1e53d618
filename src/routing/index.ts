export * from "./types.js";
export { RequestMemo } from "./memo.js";
export * from "./filters.js";
export * from "./policies.js";
export { hash32, unitHash } from "./hash.js";
export * from "./cache-aware.js";
export * from "./prefix-index.js";
export * from "./prefix-oracle.js";
