"""Picking the adapter from config.json, and refusing unsupported and remote-code checkpoints
(:mod:`egg_interp.checkpoints`, before torch; :func:`load_model` runs the same check)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from egg_interp.checkpoints import MODEL_TYPES, check_model_source
from egg_interp.errors import InputError, UnsupportedModelError
from egg_interp.models import ADAPTERS, load_model


def _write_config(directory, **config):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.fixture()
def hub_config(monkeypatch, tmp_path):
    """The config.json the hub serves for any id, offline: fill the returned dict.

    The id is in no local cache and the hub is reachable, so ``check_model_source`` goes on
    to ``huggingface_hub.hf_hub_download``, which here writes the dict to a file.
    """
    import huggingface_hub
    from huggingface_hub import constants

    from egg_interp import checkpoints

    served: dict = {}

    def download(repo_id, filename, **kwargs):
        path = tmp_path / "hub" / repo_id / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(served))
        return str(path)

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **kw: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(checkpoints, "hub_reachable", lambda endpoint, timeout=3.0: True)
    return served


def test_registry_has_every_architecture():
    assert {"llava", "llava_next", "qwen2_5_vl", "internvl"} <= set(ADAPTERS)
    assert len(ADAPTERS) >= 20


def test_every_registered_type_has_its_own_test_file():
    """Each model type is tested on its own tiny checkpoint (tests/test_arch_<type>.py), and so
    is each refusal; the core LLaVA-1.5 tests live in the files of the core features."""
    from egg_interp.models.loading import REFUSED

    here = Path(__file__).parent
    missing = [t for t in (*ADAPTERS, *REFUSED) if t != "llava"]
    missing = [t for t in missing if not (here / f"test_arch_{t}.py").is_file()]
    assert not missing, f"no tests/test_arch_<type>.py for {missing}"


def test_model_types_mirror_the_adapters():
    """The command line refuses an unsupported checkpoint before torch by this list."""
    from egg_interp.models.loading import REFUSED

    known = set(ADAPTERS) | set(REFUSED)
    missing, extra = known - set(MODEL_TYPES), set(MODEL_TYPES) - known
    assert not missing, f"add {sorted(missing)} to egg_interp/checkpoints.py MODEL_TYPES"
    assert not extra, f"MODEL_TYPES lists {sorted(extra)}, which no adapter registers"


def test_unsupported_and_missing_checkpoints_are_refused(tmp_path):
    bert = _write_config(tmp_path / "bert", model_type="bert")
    with pytest.raises(UnsupportedModelError, match="architecture 'bert' is not supported"):
        check_model_source(bert)
    with pytest.raises(UnsupportedModelError, match="not supported"):
        load_model(bert, device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no config.json: not a Hugging Face checkpoint"):
        check_model_source(tmp_path / "empty")
    with pytest.raises(InputError, match="neither a local checkpoint directory nor"):
        check_model_source(str(tmp_path / "missing"))
    assert check_model_source("organism") == "llava"


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
    assert check_model_source(str(d)) == "internvl"


@pytest.mark.parametrize(
    "source,config,expected",
    [
        ("Qwen/Qwen2.5-VL-7B-Instruct", {"model_type": "qwen2_5_vl"}, "qwen2_5_vl"),
        ("llava-hf/llava-v1.6-mistral-7b-hf", {"model_type": "llava_next"}, "llava_next"),
    ],
)
def test_hub_ids_with_dots_are_read(hub_config, source, config, expected):
    hub_config.update(config)
    assert check_model_source(source) == expected


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
        check_model_source(source)
