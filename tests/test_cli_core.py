"""The CLI's ground command end to end, and its one-line errors on bad input."""

from __future__ import annotations

import json

import pytest
from conftest import noise_image

from egg_interp.cli import main
from egg_interp.maps import AttributionMap


@pytest.fixture()
def image_file(tmp_path):
    path = tmp_path / "img.png"
    noise_image(120, 80).save(path)
    return path


def test_ground_writes_overlay_map_and_log(tiny_llava_dir, image_file, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(
        [
            "ground",
            "--model",
            str(tiny_llava_dir),
            "--image",
            str(image_file),
            "--question",
            "what colour is the square ?",
            "--out",
            str(out),
            "--stop",
            "fixed:2",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "base answer:" in text and "grounded answer:" in text and "#1" in text
    m = AttributionMap.load(out / "map.npz")
    assert m.grid.shape == (8, 8) and m.method == "egg"
    log = json.loads((out / "steps.json").read_text())
    assert len(log["steps"]) == 2 and log["decision"]["keep"] == 1
    assert (out / "grounding.png").stat().st_size > 1000
    assert not list(out.glob(".*.tmp"))  # nothing half-written left behind


@pytest.mark.parametrize(
    "image,question,model,message",
    [
        ("missing.png", "what ?", None, "image not found"),
        ("bad.png", "what ?", None, "not an image file"),
        ("img.png", "   ", None, "question is empty"),
        ("img.png", "what ?", "no/such/model", "neither a local checkpoint"),
        ("img.png", "what ?", "nodir", "neither a local checkpoint"),
        ("img.png", "what ?", "unsupported", "is not supported; supported:"),
        ("img.png", "what ?", "remote", "-hf"),
    ],
)
def test_bad_input_gives_one_line_errors(
    tiny_llava_dir, image_file, tmp_path, capsys, image, question, model, message
):
    (tmp_path / "bad.png").write_text("not an image")
    (tmp_path / "unsupported").mkdir()
    (tmp_path / "unsupported" / "config.json").write_text(json.dumps({"model_type": "blip_2"}))
    (tmp_path / "remote").mkdir()
    (tmp_path / "remote" / "config.json").write_text(
        json.dumps({"model_type": "internvl_chat", "auto_map": {"AutoModel": "x.y"}})
    )
    model_arg = str(tiny_llava_dir) if model is None else model
    if model in ("unsupported", "remote", "nodir"):
        model_arg = str(tmp_path / model) if model != "nodir" else str(tmp_path / "nodir")
    rc = main(
        ["ground", "--model", model_arg, "--image", str(tmp_path / image), "--question", question]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_methods_lists_the_registry(capsys):
    assert main(["methods"]) == 0
    assert "egg" in capsys.readouterr().out


def test_every_command_that_loads_a_model_defaults_to_the_organism():
    """``report --model`` and ``explore --model`` default to the model recorded in the results."""
    from egg_interp.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    checked = []
    for name, cmd in sub.choices.items():
        model = [a for a in cmd._actions if a.dest == "model"]
        if model and name not in ("report", "explore"):
            assert model[0].default == "organism", name
            checked.append(name)
    assert {"ground", "compare", "evaluate", "demo", "bench"} <= set(checked)
