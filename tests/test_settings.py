"""LoopSettings: checked when built, from the CLI in well under a second, before torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from egg_interp.errors import InputError
from egg_interp.settings import (
    METHOD_NAMES,
    PIPELINE_NAMES,
    TARGET_NAMES,
    LoopSettings,
    canonical_name,
    parse_options,
    resolve_name,
)


def test_names_mirror_the_registries():
    from egg_interp.methods import METHODS
    from egg_interp.methods.targets import TARGETS
    from egg_interp.pipelines import PIPELINES

    assert set(METHOD_NAMES) == set(METHODS)
    assert set(TARGET_NAMES) == set(TARGETS)
    assert set(PIPELINE_NAMES) == set(PIPELINES)


def test_one_name_rule():
    assert canonical_name(" Rel-Att ") == "rel_att"
    assert resolve_name("integrated-gradients", METHOD_NAMES, "method") == "integrated_gradients"
    with pytest.raises(InputError, match="unknown method 'bogus'; valid: "):
        resolve_name("bogus", METHOD_NAMES, "method")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "bogus"}, "unknown method"),
        ({"stop": "bogus"}, "unknown stopping rule"),
        ({"stop": "fixed:x"}, "expects a int"),
        ({"target": "nope"}, "unknown target"),
        ({"top_k": 0}, "top_k"),
        ({"max_steps": 0}, "max_steps"),
        ({"crop_scale": -1.0}, "crop_scale"),
        ({"min_crop_side": 0}, "min_crop_side"),
        ({"sigma": -0.5}, "sigma"),
        ({"sigma": float("nan")}, "sigma"),
        ({"sigma": True}, "sigma"),
        ({"method_options": {"space": "pixels"}}, "need a named method"),
    ],
)
def test_bad_settings_fail_when_built(kwargs, match):
    with pytest.raises(InputError, match=match):
        LoopSettings(**kwargs)


def test_settings_defaults_and_per_pipeline_method():
    s = LoopSettings(method="Grad-Att", stop=" fixed:2 ")
    assert (s.method, s.stop, s.method_for("vicrop")) == ("grad_att", "fixed:2", "grad_att")
    d = LoopSettings()
    assert (d.method_for("egg"), d.method_for("vicrop")) == ("egg", "rel_att")
    assert parse_options("space=pixels, n_steps=16, flag=true") == {
        "space": "pixels",
        "n_steps": 16,
        "flag": True,
    }
    assert d.rule().max_steps == 15


def test_pipeline_options_embed_the_settings_and_keep_old_hashes():
    from egg_interp.pipelines import PIPELINES, PipelineOptions

    flat = PipelineOptions(stop="fixed:2")
    assert flat.loop == LoopSettings(stop="fixed:2")
    # the hashed subset of the default egg pipeline is what it was before LoopSettings
    assert PipelineOptions().subset(PIPELINES["egg"].uses) == {
        "method": "egg",
        "stop": "ent",
        "top_k": 2,
        "max_steps": 15,
        "max_new_tokens": 20,
    }
    assert PipelineOptions().subset(PIPELINES["vicrop"].uses) == {
        "vicrop_method": "rel_att",
        "max_new_tokens": 20,
    }
    with pytest.raises(InputError):
        PipelineOptions(bogus=1)
    # the paper's smoothing (or "the model's own", unresolved) keeps the old hash; another
    # smoothing is recorded
    paper = PipelineOptions(sigma=1.5).subset(PIPELINES["egg"].uses)
    assert paper == PipelineOptions().subset(PIPELINES["egg"].uses)
    assert PipelineOptions(sigma=0.75).subset(PIPELINES["egg"].uses)["sigma"] == 0.75


def test_unset_sigma_is_the_models_own():
    class Model:
        region_sigma = 0.75

    assert LoopSettings().sigma is None
    assert LoopSettings().for_model(Model()).sigma == 0.75
    assert LoopSettings(sigma=2).for_model(Model()).sigma == 2.0  # a given sigma wins


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "--dataset", "scenes", "--method", "bogus"],
        ["evaluate", "--dataset", "scenes", "--stop", "bogus"],
        ["evaluate", "--dataset", "scenes", "--top-k", "0"],
        ["evaluate", "--dataset", "scenes", "--sigma", "-1"],
        ["evaluate", "--dataset", "nope"],
        ["ground", "--image", "missing.png", "--question", "q"],
        ["ground", "--image", "missing.png", "--question", "q", "--stop", "fixed:x"],
    ],
)
def test_cli_rejects_bad_options_before_heavy_imports(argv):
    code = (
        "import sys; from egg_interp.cli import main; rc = main(sys.argv[1:]); "
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "assert not heavy, heavy; sys.exit(rc)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], out.stderr


def test_vicrop_method_is_a_deprecated_alias():
    from egg_interp.cli import build_parser, check_args

    args = check_args(
        build_parser().parse_args(
            ["evaluate", "--dataset", "scenes", "--vicrop-method", "grad_att"]
        )
    )
    assert args.loop.method_for("vicrop") == "grad_att"
