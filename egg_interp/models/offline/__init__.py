"""Offline builders of tiny random-weight checkpoints, one module per architecture family.

``build_tiny_<arch>(directory, words, seed=0, ...)`` writes a complete checkpoint (config,
weights, word-level tokenizer, PIL image processor, chat template) that loads with
:func:`egg_interp.models.load_model`, like a real one, without a hub or torchvision. The
sizes are chosen for tests: vision towers and language models of two layers of width 32,
and tiles of a few dozen pixels, so that several tiles, merges and padding cases occur on
images of about 100 pixels. The model organism (:mod:`egg_interp.organism`) is built from
:mod:`~egg_interp.models.offline.llava`'s pieces.

A new architecture adds one module here (``offline/<family>.py``); the shared helpers
(tokenizer, saving, small text configs) live in :mod:`~egg_interp.models.offline.common`.
"""

from egg_interp.models.offline.common import MEAN_STD, SPECIAL_TOKENS, build_word_tokenizer
from egg_interp.models.offline.llava import (
    LLAVA_CHAT_TEMPLATE,
    build_llava_processor,
    build_tiny_llava,
    llava_config,
)

__all__ = [
    "LLAVA_CHAT_TEMPLATE",
    "MEAN_STD",
    "SPECIAL_TOKENS",
    "build_llava_processor",
    "build_tiny_llava",
    "build_word_tokenizer",
    "llava_config",
]
