"""What a newcomer meets first: fast one-line failures, --version, help, threads, reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from egg_interp.cli import build_parser, main

HEAVY = ("torch", "transformers", "matplotlib", "pandas")


@pytest.mark.parametrize(
    "argv",
    [
        ["ground", "--image", "missing.png", "--question", "q"],
        ["ground", "--image", "missing.png", "--question", "q", "--device", "gpu"],
        ["ground", "--image", "missing.png", "--question", "q", "--dtype", "f8"],
        ["ground", "--image", "missing.png", "--question", "q", "--top-k", "x"],
        ["compare", "--image", "missing.png", "--question", "q"],
        ["evaluate", "--dataset", "scenes", "--limit", "0"],
        ["evaluate", "--dataset", "scenes", "--pipelines", "bogus"],
        ["evaluate", "--dataset", "scenes", "--tolerance", "0"],
        ["evaluate", "--dataset", "scenes", "--tolerance", "nan"],
        ["evaluate", "--dataset", "scenes", "--methods", "", "--pipelines", ""],
        ["report", "missing.jsonl", "--out", "r"],
        ["report", "missing.jsonl", "--out", "r", "--grids", "-1"],
        ["demo", "--n", "0"],
        ["bench", "--repeat", "0"],
        ["bench", "--methods", "bogus"],
        ["merge", "out.jsonl", "missing*.jsonl"],
        ["explore", "missing.jsonl"],
        ["methods", "--bogus"],
    ],
)
def test_every_command_fails_in_one_line_before_heavy_imports(argv, tmp_path):
    code = (
        "import sys; from egg_interp.cli import main\n"
        "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not heavy, heavy; sys.exit(rc)"
    )
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], out.stderr
    assert time.perf_counter() - start < 60  # well under a second on an idle machine


def _checkpoint(kind: str, root) -> str:
    """A ``--model`` that cannot load, of the given kind."""
    if kind == "not a checkpoint":
        (root / "empty").mkdir()
        return str(root / "empty")
    if kind in ("unsupported", "remote code"):
        config = {"model_type": "bert"}
        if kind == "remote code":
            config = {"model_type": "internvl_chat", "auto_map": {"AutoModel": "m.M"}}
        (root / "ckpt").mkdir()
        (root / "ckpt" / "config.json").write_text(json.dumps(config))
        return str(root / "ckpt")
    return "nobody/not-cached-here"  # with the hub's endpoint a closed local port


@pytest.mark.parametrize(
    "command, kind, message",
    [
        ("evaluate", "not a checkpoint", "has no config.json: not a Hugging Face checkpoint"),
        ("evaluate", "unsupported", "architecture 'bert' is not supported"),
        ("evaluate", "remote code", "needs trust_remote_code"),
        ("evaluate", "unreachable hub id", "not in the local Hugging Face cache and http://127"),
        ("ground", "unsupported", "architecture 'bert' is not supported"),
        ("demo", "unreachable hub id", "not in the local Hugging Face cache and http://127"),
    ],
)
def test_a_model_that_cannot_load_fails_before_torch(command, kind, message, tmp_path):
    """Checked from config.json (or the hub's reachability) with neither torch nor
    transformers imported: well under a second on an idle machine (4.5 s before, when the
    check imported the model stack)."""
    model = _checkpoint(kind, tmp_path)
    argv = {
        "evaluate": ["evaluate", "--dataset", "scenes"],
        "ground": ["ground", "--image", "missing.png", "--question", "q"],
        "demo": ["demo"],
    }[command] + ["--model", model]
    code = (
        "import sys, time; from egg_interp.cli import main\n"
        "start = time.perf_counter(); rc = main(sys.argv[1:]); took = time.perf_counter() - start\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not heavy, heavy; print(took); sys.exit(rc)"
    )
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_CACHE=str(tmp_path / "cache"))
    env.pop("HF_HUB_OFFLINE", None)
    out = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert float(out.stdout) < 3.0  # measured 0.01-0.3 s; the bound allows a loaded machine


def test_model_loads_keep_transformers_progress_bar_off_stderr(tiny_llava_dir, tmp_path, capsys):
    from egg_interp.models import load_model

    load_model(tiny_llava_dir, device="cpu")  # a library call keeps transformers' default
    assert "Loading weights" in capsys.readouterr().err
    argv = ["evaluate", "--model", str(tiny_llava_dir), "--dataset", "scenes", "--limit", "1"]
    argv += ["--methods", "saliency", "--pipelines", "", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "r.jsonl")]) == 0
    assert "Loading weights" not in capsys.readouterr().err


def test_help_shows_every_default_and_tells_the_truth():
    helps = {n: " ".join(c.format_help().split()) for n, c in _subcommands()}
    assert "seed of the random-crop pipeline (default: 0)" in helps["evaluate"]
    assert "seed of the random baselines (default: 0)" in helps["demo"]
    assert "comparison grids of the first N samples (default: 0)" in helps["report"]
    assert "one at a time" not in helps["evaluate"]
    assert "the answer pipelines' batches" in helps["evaluate"]
    for command in ("ground", "evaluate"):
        assert "| pixels:N (longer image side // N steps" in helps[command]
    assert "--no-progress no progress bar (default" not in helps["evaluate"]  # flags: none


def test_version(capsys):
    from egg_interp import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and __version__ in capsys.readouterr().out


def _subcommands():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices.items()


def test_every_option_has_help_and_defaults_are_shown():
    for name, cmd in _subcommands():
        for action in cmd._actions:
            if action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
    ground = " ".join(dict(_subcommands())["ground"].format_help().split())
    assert "(default: 2)" in ground and "(default: 15)" in ground and "(default: ent)" in ground


def test_threads_option_and_environment(monkeypatch):
    monkeypatch.setenv("EGG_INTERP_THREADS", "1")
    args = build_parser().parse_args(["ground", "--image", "i", "--question", "q"])
    assert args.threads == 1
    args = build_parser().parse_args(["demo", "--threads", "3"])
    assert args.threads == 3
    code = (
        "from egg_interp.cli import apply_threads; apply_threads(1); import torch; "
        "print(torch.get_num_threads())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "1", out.stderr


def _line(sample_id: str) -> str:
    record = {"sample_id": sample_id, "kind": "answer", "name": "base", "config_hash": "h"}
    record.update(model="organism", dataset="scenes", split="test", correct=True, answer="a")
    return json.dumps(record)


def test_report_on_a_file_without_readable_lines_is_an_error(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\nnor this\n")
    assert main(["report", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("egg-interp report: error: no readable results line")
    assert all(line.startswith("egg-interp report: ") for line in err)  # no echoed source


def test_report_warns_in_one_line_about_a_dropped_half_line(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    path.write_text(_line("a") + "\n" + _line("b")[:20])
    assert main(["report", str(path), "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "half-written last line dropped" in err[0], err
    assert err[0].startswith("egg-interp report: warning:")


def test_unknown_hub_id_offline_fails_in_one_line(monkeypatch, tmp_path, capsys):
    from huggingface_hub import constants

    from egg_interp import checkpoints
    from egg_interp.errors import InputError

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(checkpoints, "hub_reachable", lambda endpoint, timeout=3.0: False)
    start = time.perf_counter()
    with pytest.raises(InputError, match="not in the local Hugging Face cache") as exc:
        checkpoints.check_model_source("nobody/no-such-model")
    assert time.perf_counter() - start < 5 and "\n" not in str(exc.value)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(InputError, match="HF_HUB_OFFLINE"):
        checkpoints.check_model_source("nobody/no-such-model")
    captured = capsys.readouterr()
    assert "Retry" not in captured.err + captured.out


def _scenes_map_line(model: str) -> str:
    from egg_interp.data.registry import load_dataset

    sample = load_dataset("scenes", ".", "test", 1)[0]
    record = {"sample_id": sample.id, "kind": "map", "name": "egg", "config_hash": "h"}
    record.update(model=model, dataset="scenes", split="test", index=0)
    return json.dumps(record) + "\n"


def test_report_grids_use_the_recorded_model(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    path.write_text(_scenes_map_line("organism"))
    assert main(["report", str(path), "--out", str(tmp_path / "r"), "--grids", "1"]) == 0
    assert len(list((tmp_path / "r" / "grids").glob("*.png"))) == 1
    assert "warning" not in capsys.readouterr().err


def test_report_grids_say_in_the_terminal_why_they_cannot(tmp_path, capsys, monkeypatch):
    from egg_interp import checkpoints

    monkeypatch.setattr(checkpoints, "hub_reachable", lambda endpoint, timeout=3.0: False)
    path = tmp_path / "r.jsonl"
    path.write_text(_scenes_map_line("nobody/not-on-this-machine"))
    assert main(["report", str(path), "--out", str(tmp_path / "r"), "--grids", "1"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot load the model 'nobody/not-on-this-machine'" in err[0]
    assert err[0].startswith("egg-interp report: warning: --grids:")


def test_scene_writes_a_picture_to_try_with_its_question(tmp_path, capsys):
    """``egg-interp scene`` gives a newcomer a picture and a question the organism knows."""
    from PIL import Image

    from egg_interp.data import scenes

    out = tmp_path / "scene.png"
    assert main(["scene", "--out", str(out), "--family", "coarse", "--index", "1"]) == 0
    sample = scenes.load(split="test", families=["coarse"], per_family=2)[1]
    assert Image.open(out).tobytes() == sample.image.tobytes()
    printed = capsys.readouterr().out
    assert f"question: {sample.question}" in printed
    assert f"answer: {sample.answers[0]}" in printed
    assert f'egg-interp ground --image {out} --question "{sample.question}"' in printed
