"""The model organism: a small LLaVA-architecture VLM trained here on synthetic scenes.

The checkpoint under ``weights/`` is a plain Hugging Face directory (config, safetensors,
word-level tokenizer, LLaVA processor with chat template), loadable offline with
``AutoModelForImageTextToText.from_pretrained`` / ``AutoProcessor.from_pretrained``.
It is trained by ``analyses/train_organism.py`` on :mod:`egg_interp.data.scenes`.
"""

from __future__ import annotations

from pathlib import Path

ORGANISM_DIR = Path(__file__).resolve().parent / "weights"
"""Directory of the shipped checkpoint."""


def organism_path() -> Path:
    """Path of the shipped organism checkpoint (raises if the weights are missing)."""
    if not (ORGANISM_DIR / "config.json").is_file():
        from egg_interp.errors import InputError

        raise InputError(
            f"the model organism is missing from {ORGANISM_DIR}; "
            "train it with `python analyses/train_organism.py`"
        )
    return ORGANISM_DIR


__all__ = ["ORGANISM_DIR", "organism_path"]
