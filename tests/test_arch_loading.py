"""Picking the adapter from config.json, and refusing remote-code checkpoints."""

from __future__ import annotations

import json

import pytest

from egg_interp.errors import UnsupportedModelError
from egg_interp.models import ADAPTERS, load_model
from egg_interp.models.loading import _read_model_type


def _write_config(directory, **config):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.fixture()
def hub_config(monkeypatch):
    """The config.json the hub serves for any id, offline: fill the returned dict.

    The id is in no local cache and the hub is reachable, so ``_hub_config`` goes on to
    ``PretrainedConfig.get_config_dict``, which answers with the dict.
    """
    import huggingface_hub
    from huggingface_hub import constants
    from transformers import PretrainedConfig

    from egg_interp.models import loading

    served: dict = {}
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **kw: None)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(loading, "_hub_reachable", lambda endpoint, timeout=3.0: True)
    monkeypatch.setattr(PretrainedConfig, "get_config_dict", lambda src, **kw: (served, {}))
    return served


def test_registry_has_every_architecture():
    assert {"llava", "llava_next", "qwen2_5_vl", "internvl"} <= set(ADAPTERS)


def test_remote_code_internvl_is_refused_naming_the_hf_checkpoint(tmp_path):
    d = _write_config(
        tmp_path / "InternVL3_5-8B",
        model_type="internvl_chat",
        auto_map={"AutoModel": "modeling_internvl_chat.InternVLChatModel"},
    )
    with pytest.raises(UnsupportedModelError, match="trust_remote_code") as info:
        load_model(d, device="cpu")
    assert "OpenGVLab/InternVL3_5-8B-HF" in str(info.value)


def test_auto_map_on_a_supported_type_is_not_refused(tmp_path):
    d = _write_config(tmp_path / "m", model_type="internvl", auto_map={"AutoConfig": "x.Y"})
    assert _read_model_type(str(d)) == "internvl"


@pytest.mark.parametrize(
    "source,config,expected",
    [
        ("Qwen/Qwen2.5-VL-7B-Instruct", {"model_type": "qwen2_5_vl"}, "qwen2_5_vl"),
        ("llava-hf/llava-v1.6-mistral-7b-hf", {"model_type": "llava_next"}, "llava_next"),
    ],
)
def test_hub_ids_with_dots_are_read(hub_config, source, config, expected):
    hub_config.update(config)
    assert _read_model_type(source) == expected


@pytest.mark.parametrize(
    "source,hint",
    [
        ("OpenGVLab/InternVL3_5-8B", "OpenGVLab/InternVL3_5-8B-HF"),
        ("OpenGVLab/InternVL3-8B", "OpenGVLab/InternVL3-8B-hf"),
    ],
)
def test_remote_code_hub_id_is_refused_naming_its_hf_variant(hub_config, source, hint):
    hub_config.update(model_type="internvl_chat", auto_map={"AutoModel": "m.M"})
    with pytest.raises(UnsupportedModelError, match=hint):
        _read_model_type(source)
