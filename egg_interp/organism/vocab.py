"""The organism's word list: every word its prompts and answers can contain."""

from __future__ import annotations

from egg_interp.data.scenes import COLOURS, PATTERNS, SHAPES

PROMPT_WORDS = ("USER", "ASSISTANT", ":", "?", ".", ",")
QUESTION_WORDS = (
    "what", "pattern", "is", "on", "the", "colour", "color", "shape", "object",
    "do", "and", "have", "same", "there", "a", "an", "yes", "no",
)  # fmt: skip

WORDS: tuple[str, ...] = tuple(
    dict.fromkeys((*PROMPT_WORDS, *QUESTION_WORDS, *COLOURS, *SHAPES, *PATTERNS))
)
"""Vocabulary after the special tokens ``<pad> <unk> <s> </s> <image>``."""
