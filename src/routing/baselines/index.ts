// The peers' routing designs as baselines (README.md): each named after the router it comes from.
export * from "./vllm-router-cache-aware.js";
export * from "./llm-d-sticky.js";
