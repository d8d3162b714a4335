"""The default model's word-level tokenizer reads unknown words as <unk>: warned once."""

from __future__ import annotations

import warnings

import pytest
from conftest import noise_image


def test_unknown_words_warn_once_per_model(tiny_llava):
    image = noise_image(64, 64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny_llava.build_inputs([image], "what colour is the square ?")
    assert not [w for w in caught if "unknown to the model" in str(w.message)]
    with pytest.warns(UserWarning, match=r"unknown to the model's tokenizer.*person, holding"):
        tiny_llava.build_inputs([image], "what is the person holding ?")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny_llava.build_inputs([image], "what is the person holding ?")
        tiny_llava.build_batch([([image], "is the dog asleep ?")])
    assert not [w for w in caught if "unknown to the model" in str(w.message)]


def test_a_methods_own_prompt_does_not_warn(tiny_llava):
    from egg_interp.methods import attribute

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        attribute(tiny_llava, noise_image(64, 64), "what colour is the square ?", "rel_att")
    assert not [w for w in caught if "unknown to the model" in str(w.message)]
