// The defaults several commands share, in one place: the router's port is what `switchyard router` and
// `switchyard up` listen on and what `bench`, `status` and `smoke` reach when given no URL.

/** The port a router listens on unless its config or `--port` names another. */
export const ROUTER_PORT = 8080;

/** Where the client commands find a router on this machine unless given a URL. */
export const ROUTER_URL = `http://127.0.0.1:${ROUTER_PORT}`;
