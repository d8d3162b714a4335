"""Checks for hybrid language models whose other layers mix tokens without attention weights
(Qwen3.5's Gated DeltaNet linear attention), shared by their ``test_arch_*.py``.

* attention maps read the full-attention layers only, at the right layer, say so in their
  metadata, and refuse a layer without weights and the rollout in one line;
* a left-padded batch gives every row the logits it has alone, although the recurrent state
  runs over the whole row (the model zeroes the padded positions);
* a map forward's cache holds the linear-attention states, detached from the map's graph;
* left-padded batched generation equals one-by-one generation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import noise_image

from egg_interp.errors import UnsupportedModelError
from egg_interp.methods import get_method

QUESTION = "what colour is the square ?"


def _weights_of_layer(adapter, inputs, layer):
    """Layer ``layer``'s attention weights ``(heads, seq, seq)``, caught at the module itself."""
    caught = []
    attn = adapter.language_model.layers[layer].self_attn
    handle = attn.register_forward_hook(lambda mod, args, out: caught.append(out[1]))
    try:
        with adapter.attention_implementation("eager"), torch.no_grad():
            adapter.forward_features(inputs, adapter.image_features(inputs), output_attentions=True)
    finally:
        handle.remove()
    assert len(caught) == 1 and caught[0] is not None
    return caught[0][0]


def check_attention_maps_read_attention_layers(adapter, images, attention_layers):
    """``raw_attention`` at each attention layer equals that layer's weights, read at the
    module (mean over heads, last row, image columns); the default is the middle attention
    layer; the metadata names the layers; a linear layer and the rollout are refused."""
    n = adapter.num_lm_layers
    assert adapter.attention_layers == attention_layers and len(attention_layers) < n
    inputs = adapter.build_inputs(images, QUESTION)
    columns = torch.cat(adapter.visual_positions(inputs))
    for layer in attention_layers:
        method = get_method("raw_attention", layers=layer)
        relevance, _ = method.relevance(adapter, inputs, method.target)  # feature-row order
        expected = _weights_of_layer(adapter, inputs, layer)[:, -1, columns].float().mean(0)
        got = np.concatenate([np.asarray(r, dtype=np.float32) for r in relevance])
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-8)
    default = get_method("raw_attention").attribute(adapter, images, QUESTION, inputs=inputs)
    assert default.meta["layers"] == [attention_layers[len(attention_layers) // 2]]
    assert default.meta["attention_layers"] == attention_layers
    assert "linear attention" in default.meta["attention_note"]
    every = get_method("raw_attention", layers="all").attribute(adapter, images, QUESTION)
    assert every.meta["layers"] == attention_layers
    linear = next(i for i in range(n) if i not in attention_layers)
    with pytest.raises(UnsupportedModelError, match="no attention weights"):
        get_method("raw_attention", layers=linear).attribute(adapter, images, QUESTION)
    with pytest.raises(UnsupportedModelError, match="linear attention"):
        get_method("attention_rollout").attribute(adapter, images, QUESTION)
    for name in ("rel_att", "grad_att"):
        amap = get_method(name).attribute(adapter, images, QUESTION)
        assert amap.meta["attention_layers"] == attention_layers, name


def check_left_padding_is_exact(adapter):
    """Each row of a left-padded batch (one row padded by more than the delta rule's chunk of
    64 tokens) has the next-token logits it has alone; the same padding tokens left unmasked
    change them, so the equality is the model's masking at work, not indifference."""
    items = [
        ([noise_image(250, 250, 2), noise_image(200, 130, 3)], "is there a red circle ?"),
        ([noise_image(50, 80, 4)], "what ?"),
    ]
    batch = adapter.build_batch(items)
    pads = (batch.batch["attention_mask"] == 0).sum(1).tolist()
    assert pads[0] == 0 and pads[1] > 64
    with torch.no_grad():
        rows = adapter.forward_features(batch, adapter.image_features(batch)).logits[:, -1]
        for row, (images, question) in zip(rows, items):
            alone = adapter.build_inputs(images, question)
            logits = adapter.next_token_logits(alone)
            torch.testing.assert_close(row, logits, rtol=1e-4, atol=1e-5)
        unmasked = {**batch.batch, "attention_mask": torch.ones_like(batch.batch["attention_mask"])}
        from dataclasses import replace

        leaky = replace(batch, batch=unmasked)
        row = adapter.forward_features(leaky, adapter.image_features(leaky)).logits[1, -1]
    assert not torch.allclose(row, logits, rtol=1e-3, atol=1e-4)


def check_recorded_cache_holds_detached_states(adapter, image):
    """The map forward's recorded cache holds each linear-attention layer's convolution and
    recurrent states, cut from the map's autograd graph."""
    from egg_interp.models.answering import ForwardRecorder

    inputs = adapter.build_inputs([image], QUESTION)
    recorder = ForwardRecorder()
    get_method("egg").attribute(adapter, [image], QUESTION, inputs=inputs, record=recorder)
    (state,) = recorder.forwards
    linear = [i for i in range(adapter.num_lm_layers) if i not in adapter.attention_layers]
    for i in linear:
        layer = state.cache.layers[i]
        held = [*layer.conv_states.values(), *layer.recurrent_states.values()]
        assert held and all(torch.is_tensor(t) and not t.requires_grad for t in held), i
        assert any(bool(t.abs().sum() > 0) for t in held), i
    for i in adapter.attention_layers:
        assert not state.cache.layers[i].keys.requires_grad


def check_generate_batch_equals_single(adapter, n=3):
    """Greedy answers of a left-padded batch equal the answers one by one."""
    from egg_interp.models.answering import generate_batch

    items = [
        ([noise_image(96, 96, 1)], QUESTION),
        ([noise_image(50, 80, 4)], "what ?"),
    ]
    batched = generate_batch(adapter, adapter.build_batch(items), n)
    assert batched == [adapter.generate(adapter.build_inputs(ims, q), n) for ims, q in items]
