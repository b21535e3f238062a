"""A small GPT-2-style tokenizer trained in a fraction of a second (no outside data):
byte-level BPE with GPT-2's pre-tokenizer and decoder, so the core takes its fast road."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

CORPUS = [
    f"the {w} of {i} and {w}s, it's {i * 7}! We'll see they're {w}ing\n  ünïcödé 日本語 👍🏽 {i}"
    for i, w in enumerate(["cat", "dog", "bird", "fish", "naïve", "café"] * 40)
]


def train_gpt2_like(path: str, vocab_size: int = 500) -> str:
    """Trains, saves ``tokenizer.json`` at ``path`` and returns ``path``."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(path)
    return path
