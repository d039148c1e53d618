// The adapter books' public names, the one entry the LoRA plugins and src/routing import.
export * from "./books.js";
export * from "./load-time.js";
