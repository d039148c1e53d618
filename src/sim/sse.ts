// The SSE framing the sim's streaming handlers write, from the one definition every server shares.
export { DONE_EVENT, SSE_HEADERS } from "../protocol/sse.js";
