"""Shared pieces of the offline checkpoint builders: word-level tokenizers, saving, configs.

Every ``build_tiny_<arch>`` of this package writes a complete checkpoint (config, weights,
word-level tokenizer, PIL image processor, chat template) that loads with
:func:`egg_interp.models.load_model`, like a real one, without a hub or torchvision.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import LlamaConfig, PreTrainedTokenizerFast

MEAN_STD = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
"""Normalisation of every tiny checkpoint's image processor."""

SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", "<image>")


def build_word_tokenizer(
    words: Iterable[str],
    special_tokens: Sequence[str] = (),
    named_tokens: dict[str, str] | None = None,
    *,
    lowercase: bool = False,
) -> PreTrainedTokenizerFast:
    """A word-level tokenizer: whitespace and punctuation split, one id per known word.

    Parameters
    ----------
    words : iterable of str
        The vocabulary (lower case is not enforced). Special tokens ``<pad> <unk> <s> </s>
        <image>`` come first, with ids 0-4.
    special_tokens : sequence of str
        More special tokens (never split), e.g. ``<|vision_start|>``; they follow ``<image>``.
    named_tokens : dict of str to str, optional
        Special tokens also exposed as tokenizer attributes (``tok.<name>`` and
        ``tok.<name>_id``), e.g. ``{"start_image_token": "<img>"}`` as InternVL's processor
        expects.
    lowercase : bool
        Fold the text to lower case before the vocabulary lookup (the words are lower-cased
        too), so "What" and "what" are one word. Special tokens are matched as written.

    Returns
    -------
    PreTrainedTokenizerFast
        With ``pad_token``, ``unk_token``, ``bos_token``, ``eos_token`` set and ``<image>``
        plus ``special_tokens`` registered as special tokens.
    """
    named_tokens = dict(named_tokens or {})
    extra = [t for t in (*special_tokens, *named_tokens.values()) if t not in SPECIAL_TOKENS]
    vocab: dict[str, int] = {}
    for word in (*SPECIAL_TOKENS, *extra, *(w.lower() if lowercase else w for w in words)):
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=["<image>"],
        **({"extra_special_tokens": named_tokens} if named_tokens else {}),
    )
    fast.add_tokens(["<image>", *extra], special_tokens=True)  # never split (ids exist already)
    fast.padding_side = "left"
    return fast


def save_checkpoint(directory: str | Path, model: Any, processor: Any) -> Path:
    """Write ``model`` and ``processor`` to ``directory``; return it as a Path."""
    directory = Path(directory)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def llama_text_config(tokenizer: Any, hidden: int, layers: int, heads: int) -> LlamaConfig:
    """A small Llama text config sized to ``tokenizer``'s vocabulary."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )


def default_video_processor(processor_cls: type) -> Any:
    """The default video processor of ``processor_cls`` (ImportError without torchvision)."""
    import transformers

    name = processor_cls.__name__.replace("Processor", "VideoProcessor")
    return getattr(transformers, name)()
