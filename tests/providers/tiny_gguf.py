"""Builds a tiny random Llama as one GGUF file, offline, in milliseconds (the ``gguf`` package).

What llama.cpp reads from a real GGUF model, at toy size:

* a SentencePiece-style vocabulary (``tokenizer.ggml.model = llama``): ``<unk>``, ``<s>``,
  ``</s>``, the ChatML turn markers ``<|im_start|>`` / ``<|im_end|>`` (control tokens;
  ``<|im_end|>`` is the end of a turn), the 256 byte-fallback tokens ``<0x00>``..``<0xFF>``
  (any text tokenizes), every printable ASCII character and ``▁`` (a space);
* the ChatML chat template with Hermes/Qwen tools of :mod:`tests.providers.tiny_model`
  (``tokenizer.chat_template``);
* a 2-layer Llama (32-wide, 2 heads, 64-wide feed-forward) with random float32 weights drawn
  from a fixed seed.

Its answers are gibberish, but the whole path runs: llama.cpp loads the file, the chat
template renders tools, tokens are decoded and sampled, grammars constrain them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.providers.tiny_model import CHAT_TEMPLATE

N_EMBD = 32
N_HEAD = 2
N_FF = 64
N_LAYER = 2
N_CTX_TRAIN = 2048

# gguf's TokenType values (llama.cpp's llama_token_type)
NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types of the tiny vocabulary."""
    tokens = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    types = [UNKNOWN, CONTROL, CONTROL, CONTROL, CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [BYTE] * 256
    pieces = ["\u2581", *(chr(c) for c in range(0x21, 0x7F))]
    tokens += pieces
    types += [NORMAL] * len(pieces)
    scores = [0.0] * (len(tokens) - len(pieces)) + [-float(i) for i in range(len(pieces))]
    return tokens, scores, types


def build_tiny_gguf(path: Path, *, seed: int = 0) -> Path:
    """Write the tiny chat model to ``path`` (a ``.gguf`` file) and return it."""
    import gguf

    tokens, scores, types = vocabulary()
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)

    def weight(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-random-llama")
    writer.add_context_length(N_CTX_TRAIN)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(0)  # all float32
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    # numpy shapes are (rows, columns) = (out, in); the writer stores them in ggml's order
    writer.add_tensor("token_embd.weight", weight(n_vocab, N_EMBD, scale=1.0))
    for i in range(N_LAYER):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", weight(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(N_EMBD, N_FF))
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    writer.add_tensor("output.weight", weight(n_vocab, N_EMBD, scale=1.0))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
