"""The settings behind every number: dtype, attention implementation, resolution settings,
revision and versions, in every results line's config, every saved map and the report."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
import torch
import transformers

from egg_interp.maps import AttributionMap
from egg_interp.models import load_model
from egg_interp.models.offline.gemma import build_tiny_gemma4
from egg_interp.models.offline.idefics3 import build_tiny_idefics3, build_tiny_smolvlm
from egg_interp.models.offline.internvl import build_tiny_internvl
from egg_interp.models.offline.lfm2_vl import build_tiny_lfm2_vl
from egg_interp.models.offline.llava_next import build_tiny_llava_next
from egg_interp.models.offline.molmo2 import build_tiny_molmo2
from egg_interp.models.offline.phi4_multimodal import build_tiny_phi4_multimodal
from egg_interp.models.offline.qwen import build_tiny_qwen2_5_vl, build_tiny_qwen3_vl
from egg_interp.models.record import attention_implementation, checkpoint_revision, model_record
from egg_interp.results import read_results

WORDS = "what colour is the square ?".split()
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _saved_processor(directory):
    """The checkpoint's own processor_config.json (its image processor's part)."""
    config = json.loads((directory / "processor_config.json").read_text())
    return config.get("image_processor", config)


@pytest.mark.parametrize(
    "build, expected",
    [
        (build_tiny_llava_next, ("image_grid_pinpoints", "size", "crop_size")),
        (build_tiny_qwen2_5_vl, ("size", "patch_size", "merge_size", "temporal_patch_size")),
        (build_tiny_qwen3_vl, ("size", "patch_size", "merge_size")),
        (build_tiny_internvl, ("size", "min_patches", "max_patches", "crop_to_patches")),
        (build_tiny_idefics3, ("size", "max_image_size", "do_image_splitting")),
        (build_tiny_smolvlm, ("size", "max_image_size", "do_image_splitting")),
        (build_tiny_gemma4, ("max_soft_tokens", "pooling_kernel_size", "patch_size")),
        (build_tiny_lfm2_vl, ("max_image_tokens", "min_image_tokens", "max_tiles", "tile_size")),
        (build_tiny_molmo2, ("max_crops", "overlap_margins", "pooling_size", "size")),
        (build_tiny_phi4_multimodal, ("dynamic_hd", "patch_size", "size")),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_resolution_settings_are_read_from_every_architectures_processor(build, expected, tmp_path):
    directory = build(tmp_path / "ckpt", WORDS, seed=0)
    adapter = load_model(directory, device="cpu")
    record = model_record(adapter)
    images = record["resolution"]["image_processor"]
    saved = _saved_processor(directory)
    for name in expected:  # the values the checkpoint's files hold, read back by name
        assert images[name] == saved[name], name
    assert "image_mean" not in images and "image_processor_type" not in images
    assert record["dtype"] == "float32" and record["attn_implementation"] == "sdpa"
    assert record["revision"] is None  # a local directory outside any hub cache


def test_the_organisms_record_matches_its_files():
    from egg_interp.organism import ORGANISM_DIR

    record = model_record(load_model("organism", device="cpu"))
    saved = _saved_processor(ORGANISM_DIR)
    images = record["resolution"]["image_processor"]
    assert images["size"] == saved["size"] == {"shortest_edge": 64}
    assert images["crop_size"] == saved["crop_size"] and images["resample"] == saved["resample"]
    processor = json.loads((ORGANISM_DIR / "processor_config.json").read_text())
    assert record["resolution"]["processor"]["patch_size"] == processor["patch_size"]
    assert record["versions"] == {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "egg_interp": __import__("egg_interp").__version__,
    }


def test_attention_implementation_in_use():
    def config(**subs):
        return SimpleNamespace(_attn_implementation="sdpa", sub_configs=dict.fromkeys(subs), **subs)

    same = config(text_config=SimpleNamespace(_attn_implementation="sdpa"))
    assert attention_implementation(same) == "sdpa"
    mixed = config(vision_config=SimpleNamespace(_attn_implementation="eager"))
    assert attention_implementation(mixed) == {"model": "sdpa", "vision_config": "eager"}


def test_an_eager_load_is_recorded_as_eager(tiny_llava_dir):
    adapter = load_model(tiny_llava_dir, device="cpu", attn_implementation="eager")
    assert model_record(adapter)["attn_implementation"] == "eager"


def test_revision_of_a_hub_snapshot(tiny_llava_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--someone--tiny-llava"
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(tiny_llava_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert checkpoint_revision("someone/tiny-llava") == COMMIT
    assert checkpoint_revision("someone/not-cached") is None
    assert checkpoint_revision(str(snapshot)) == COMMIT
    assert checkpoint_revision(str(tiny_llava_dir)) is None
    assert model_record(load_model(snapshot, device="cpu"))["revision"] == COMMIT


def test_lines_and_saved_maps_record_the_settings_and_a_change_is_new_work(tiny_llava, tmp_path):
    from egg_interp.data import scenes
    from egg_interp.runner import evaluate

    samples = scenes.load(split="test", limit=2)
    out = tmp_path / "r.jsonl"
    kwargs = dict(methods=["saliency"], pipelines=["base"], progress=False, model="tiny")
    first = evaluate(tiny_llava, samples, out=out, maps_dir=tmp_path / "maps", **kwargs)
    assert first.written == 4
    record = model_record(tiny_llava)
    for line in read_results(out):
        config = line["config"]
        assert {k: config[k] for k in record} == json.loads(json.dumps(record))
        assert config["versions"]["torch"] == torch.__version__
        if line["kind"] == "map":
            saved = AttributionMap.load(tmp_path / line["map_file"]).meta["settings"]
            assert saved == {"model": "tiny", "weights": config["weights"], **record}
    # another pixel budget (here the resampling filter) changes results: fresh lines
    tiny_llava.processor.image_processor.resample = 2
    tiny_llava.clear_cache()
    again = evaluate(tiny_llava, samples, out=out, **kwargs)
    assert again.written == 4 and again.skipped == 0


def test_the_report_shows_the_settings(tiny_llava, tmp_path):
    from egg_interp.data import scenes
    from egg_interp.report import write_report
    from egg_interp.runner import evaluate

    out = tmp_path / "r.jsonl"
    evaluate(tiny_llava, scenes.load(split="test", limit=1), ["saliency"], [], out, model="tiny")
    old = {"sample_id": "x", "kind": "map", "name": "egg", "config_hash": "h", "model": "old"}
    old["config"] = {"dtype": "bfloat16", "code": "egg_interp 0.1.0, results schema 1"}
    with open(out, "a") as fh:
        fh.write(json.dumps(old) + "\n")
    write_report(out, tmp_path / "report", figures=False)
    text = (tmp_path / "report" / "report.md").read_text()
    section = text.split("## Settings behind these numbers", 1)[1]
    rows = [r for r in section.splitlines() if r.startswith("| ") and "---" not in r][1:]
    assert len(rows) == 2
    old_row = next(r for r in rows if r.startswith("| old "))
    assert "| bfloat16 | not recorded |" in old_row and "results schema 1" in old_row
    tiny_row = next(r for r in rows if r.startswith("| tiny "))
    assert "| float32 | sdpa |" in tiny_row and "shortest_edge" in tiny_row
    assert f"transformers {transformers.__version__}" in tiny_row
