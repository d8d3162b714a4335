"""Deletion and insertion in runs: the option, the registry's declarations, the map lines and
map files of a real organism run, the report's tables and the explorer's curves.

One module-scoped run of the organism (3 scenes, EGG and raw attention, 4 steps: 8 masked
inputs per map and 8 more per prompt for the random order) feeds the runner, report and
explorer checks; the rest are hand-computed cases.
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from egg_interp.errors import InputError
from egg_interp.faithfulness import area_scores, faithfulness_scores
from egg_interp.maps import AttributionMap
from egg_interp.metrics import deletion
from egg_interp.metrics.deletion import FaithfulnessSettings
from egg_interp.metrics.registry import SCORES, scores
from egg_interp.results import ResultsWriter, config_hash, read_results
from egg_interp.run_config import RunConfig, faithfulness_from_args
from egg_interp.settings import LoopSettings

SETTINGS = FaithfulnessSettings(steps=4)
"""Cheap but complete: deletion and insertion, MoRF, LeRF and random, 4 steps."""


# ------------------------------------------------------------------ declarations and options
def test_each_faithfulness_score_is_declared_once_with_its_direction():
    declared = {s.name: s.direction for s in scores("map", "faithfulness")}
    assert list(declared) == FaithfulnessSettings().score_names()
    assert declared == {
        "deletion_auc": "lower",
        "deletion_auc_lerf": "higher",
        "deletion_auc_random": "none",
        "deletion_gap": "higher",
        "insertion_auc": "higher",
        "insertion_auc_lerf": "lower",
        "insertion_auc_random": "none",
        "insertion_gap": "higher",
    }
    assert not hasattr(deletion, "SCORE_DIRECTION")  # one declaration: the registry's
    assert SCORES["deletion_auc"].header == "deletion AUC (MoRF) \u2193"
    # the gaps are computed from the areas by the registry (better order first: positive)
    areas = {"deletion_morf": 0.2, "deletion_lerf": 0.7, "insertion_morf": 0.6}
    assert area_scores(areas) == {
        "deletion_auc": 0.2,
        "deletion_auc_lerf": 0.7,
        "deletion_gap": pytest.approx(0.5),
        "insertion_auc": 0.6,
    }


def _args(**given):
    names = ("faithfulness", "faithfulness_space", "faithfulness_substrate")
    names += ("faithfulness_steps", "faithfulness_orders")
    return argparse.Namespace(**{n: given.get(n) for n in names})


def test_the_command_line_options_build_the_settings():
    assert faithfulness_from_args(_args()) is None
    built = faithfulness_from_args(
        _args(
            faithfulness="deletion, insertion",
            faithfulness_space="tokens",
            faithfulness_steps=8,
            faithfulness_orders="morf,random",
        )
    )
    assert built == FaithfulnessSettings(space="tokens", steps=8, orders=("morf", "random"))
    assert built.substrate == "mean"  # the space's default
    with pytest.raises(InputError, match="--faithfulness-steps needs --faithfulness"):
        faithfulness_from_args(_args(faithfulness_steps=8))
    with pytest.raises(InputError, match="pixels substrates"):
        faithfulness_from_args(_args(faithfulness="deletion", faithfulness_substrate="drop"))
    with pytest.raises(InputError, match="FaithfulnessSettings"):
        RunConfig(methods=["egg"], pipelines=[], faithfulness={"steps": 4})


def _map_job(faithfulness=None):
    """EGG's map job, the loop's smoothing at the paper's (as resolved for the organism)."""
    from egg_interp.runner import _build_jobs

    run = RunConfig(
        methods=["egg"], pipelines=[], loop=LoopSettings(sigma=1.5), faithfulness=faithfulness
    )
    return _build_jobs({"model": "m"}, run, None)[0]


def test_the_settings_are_hashed_and_a_run_without_them_keeps_its_hash():
    plain = _map_job()
    # the config (and so the hash) a map job had before the option existed
    assert set(plain.config) == {"model", "kind", "method", "options", "tolerance", "top_k"}
    assert plain.hash == config_hash(plain.config)
    on = _map_job(SETTINGS)
    assert on.config["faithfulness"] == SETTINGS.hashed() and on.hash != plain.hash
    assert "rows_per_forward" not in on.config["faithfulness"]  # memory only, like batching
    assert _map_job(SETTINGS.replace(rows_per_forward=4)).hash == on.hash
    assert _map_job(SETTINGS.replace(steps=8)).hash != on.hash


# ------------------------------------------------------------------ a real run of the organism
@pytest.fixture(scope="module")
def organism():
    from egg_interp.models import load_model

    return load_model("organism", device="cpu")


@pytest.fixture(scope="module")
def run(organism, tmp_path_factory):
    """3 scenes, EGG (maps saved) and raw attention, faithfulness on; batch 2 (EGG's maps
    batched, the curves per map)."""
    from egg_interp.data.registry import load_dataset
    from egg_interp.runner import evaluate

    out = tmp_path_factory.mktemp("faithful") / "results.jsonl"
    samples = load_dataset("scenes", ".", None, 3)
    common = dict(dataset="scenes", model="organism", progress=False, batch_size=2)
    evaluate(
        organism,
        samples,
        ["egg", "raw_attention"],
        [],
        out,
        maps_dir=out.parent / "maps",
        faithfulness=SETTINGS,
        **common,
    )
    return out, samples


def test_map_lines_carry_the_aucs_and_map_files_the_curves(run, organism):
    out, samples = run
    lines = list(read_results(out))
    assert len(lines) == 6 and not any(r["error"] for r in lines)
    names = SETTINGS.score_names()
    by_key = {(r["sample_id"], r["name"]): r for r in lines}
    for r in lines:
        assert r["config"]["faithfulness"] == SETTINGS.hashed()
        assert set(names) <= set(r["scores"]) and all(np.isfinite(r["scores"][n]) for n in names)
    # the scores are faithfulness_scores of the line's map, recomputed here
    sample = samples[1]
    amap = AttributionMap.load(out.parent / by_key[sample.id, "egg"]["map_file"])
    again, curves = faithfulness_scores(organism, sample, amap, SETTINGS)
    for name in names:
        assert by_key[sample.id, "egg"]["scores"][name] == pytest.approx(again[name], abs=1e-5)
    saved = amap.meta["faithfulness"]
    assert saved["settings"] == SETTINGS.to_dict() and saved["answer"] == curves["answer"]
    np.testing.assert_allclose(
        saved["curves"]["deletion"]["morf"]["prob"],
        curves["curves"]["deletion"]["morf"]["prob"],
        atol=1e-5,
    )
    assert saved["areas"]["deletion_morf"] == pytest.approx(again["deletion_auc"], abs=1e-5)
    # cost: MoRF and LeRF of both curves at 4 steps are 8 masked inputs per map; the random
    # order's 8 are paid by each prompt's first map only (raw attention reuses EGG's)
    for sid in {s.id for s in samples}:
        egg, raw = by_key[sid, "egg"], by_key[sid, "raw_attention"]
        assert egg["timing"]["faithfulness"]["rows"] == 16
        assert raw["timing"]["faithfulness"]["rows"] == 8
        assert raw["scores"]["deletion_auc_random"] == egg["scores"]["deletion_auc_random"]


def test_a_run_without_the_option_resumes_apart(run, organism, tmp_path):
    """The same file, the same methods without faithfulness: new keys (the lines of a plain
    run), no faithfulness score; a rerun with it skips everything."""
    from egg_interp.runner import evaluate

    out, samples = run
    out = Path(shutil.copy(out, tmp_path / "results.jsonl"))
    common = dict(dataset="scenes", model="organism", progress=False)
    plain = evaluate(organism, samples[:1], ["raw_attention"], [], out, **common)
    assert plain.written == 1
    line = list(read_results(out))[-1]
    assert "faithfulness" not in line["config"] and "faithfulness" not in line["timing"]
    assert not {n for n in line["scores"] if n.startswith(("deletion", "insertion"))}
    again = evaluate(
        organism, samples, ["egg", "raw_attention"], [], out, faithfulness=SETTINGS, **common
    )
    assert (again.written, again.skipped) == (0, 6)


def test_report_shows_faithfulness_and_the_target_ablation_on_real_lines(run, tmp_path):
    from egg_interp.report import write_report

    out, _ = run
    rep = tmp_path / "rep"
    write_report(out, rep, figures=False)
    table = pd.read_csv(rep / "faithfulness.csv").set_index("method")
    assert list(table.index) == ["egg", "raw_attention"]
    assert list(table["target"]) == ["entropy", "none"]
    lines = [r for r in read_results(out) if r["name"] == "egg"]
    assert table.loc["egg", "deletion_auc"] == pytest.approx(
        np.mean([r["scores"]["deletion_auc"] for r in lines])
    )
    # the curves' cost is the faithfulness table's; the localisation table's is the map's own
    timing = [r["timing"] for r in lines]
    assert table.loc["egg", "seconds"] == pytest.approx(
        np.mean([t["faithfulness"]["seconds"] for t in timing])
    )
    localisation = pd.read_csv(rep / "pointing_game.csv").set_index("method")
    assert localisation.loc["egg", "seconds"] == pytest.approx(
        np.mean([t["total"] - t["faithfulness"]["seconds"] for t in timing])
    )
    md = (rep / "report.md").read_text()
    assert "| deletion AUC (MoRF) \u2193 |" in md
    assert "insertion AUC (MoRF) = deletion AUC (LeRF)" in md  # one substrate, said so
    assert not (rep / "target_ablation.md").exists()  # no saliency line: no ablation


def test_explorer_draws_saved_and_recomputed_curves(run, tmp_path):
    from egg_interp.explorer.build import ExplorerOptions, collect

    out, samples = run
    data = collect(out, ExplorerOptions(plots=False, max_curves=1))
    first, later = data["samples"][0], data["samples"][1]
    egg = first["maps"]["egg"]["curves"]
    assert egg["src"] == "saved" and set(egg) >= {"fractions", "deletion", "insertion"}
    assert set(egg["deletion"]) == {"morf", "lerf", "random"}
    line = next(
        r for r in read_results(out) if r["name"] == "egg" and r["sample_id"] == first["id"]
    )
    assert egg["deletion"]["morf"] == pytest.approx(
        AttributionMap.load(out.parent / line["map_file"]).meta["faithfulness"]["curves"][
            "deletion"
        ]["morf"]["prob"],
        abs=1e-4,
    )
    # saved curves are shown for every sample with media, beyond max_curves
    assert later["maps"]["raw_attention"]["curves"]["src"] == "saved"
    names = [s["name"] for s in data["scores"]]
    assert "deletion_auc" in names and "insertion_gap" in names


def test_explorer_measures_the_curves_again_when_no_map_was_saved(run, organism, tmp_path):
    from egg_interp.explorer.build import ExplorerOptions, collect
    from egg_interp.runner import evaluate

    _, samples = run
    out = tmp_path / "unsaved.jsonl"
    evaluate(
        organism,
        samples[:2],
        ["raw_attention"],
        [],
        out,
        dataset="scenes",
        model="organism",
        progress=False,
        faithfulness=SETTINGS,
    )
    data = collect(out, ExplorerOptions(plots=False, max_curves=1))
    first, second = (s["maps"]["raw_attention"] for s in data["samples"])
    assert first["src"] == "recomputed" and first["curves"]["src"] == "recomputed"
    assert second["curves"] is None  # beyond max_curves: not measured again
    area = float(np.trapezoid(first["curves"]["deletion"]["morf"], first["curves"]["fractions"]))
    assert area == pytest.approx(first["scores"]["deletion_auc"], abs=1e-4)


# ------------------------------------------------------------------ the target ablation
def _line(sid, name, target, pg, deletion_auc, config="c"):
    return {
        "sample_id": sid,
        "kind": "map",
        "name": name,
        "config_hash": config * 8,
        "dataset": "scenes",
        "split": "test",
        "model": "organism",
        "index": int(sid[1:]),
        "boxes": [[0, 0, 1, 1]],
        "error": "",
        "target": target,
        "scores": {"pointing_game": pg, "deletion_auc": deletion_auc},
    }


def test_target_ablation_pairs_egg_with_saliency_of_another_target(tmp_path):
    from egg_interp.metrics.intervals import bootstrap_interval, wilson_interval
    from egg_interp.report import target_ablation_table, write_report

    path = tmp_path / "r.jsonl"
    egg = [(1.0, 0.2), (1.0, 0.3), (0.0, 0.4), (1.0, 0.1)]
    sal = [(1.0, 0.3), (0.0, 0.5), (0.0, 0.4), (1.0, 0.3)]
    with ResultsWriter(path) as w:
        for i, ((pa, da), (pb, db)) in enumerate(zip(egg, sal)):
            w.write(_line(f"s{i}", "egg", "entropy", pa, da))
            w.write(_line(f"s{i}", "saliency", "answer_logprob", pb, db))
            w.write(_line(f"s{i}", "saliency", "entropy", pa, da, config="d"))  # EGG's target
        w.write(_line("s9", "saliency", "answer_logprob", 1.0, 0.9))  # no EGG line: unpaired
    rep = tmp_path / "rep"
    write_report(path, rep, figures=False)
    from egg_interp.report import load_frames

    table = target_ablation_table(load_frames(path)[0]).set_index("score")
    assert set(table["b_label"]) == {"saliency"}  # saliency[entropy] is no ablation
    assert table.loc["pointing_game", "n_paired"] == 4
    assert table.loc["pointing_game", "a"] == 0.75 and table.loc["pointing_game", "b"] == 0.5
    lo, hi = wilson_interval(3, 4)
    assert (table.loc["pointing_game", "a_lo"], table.loc["pointing_game", "a_hi"]) == (
        pytest.approx(lo),
        pytest.approx(hi),
    )
    diff = np.array([d for d in (0.1, 0.2, 0.0, 0.2)])
    assert table.loc["deletion_auc", "b_minus_a"] == pytest.approx(diff.mean())
    assert table.loc["deletion_auc", "b_minus_a_lo"] == pytest.approx(
        bootstrap_interval(np.mean, diff)[0]
    )
    md = (rep / "target_ablation.md").read_text()
    assert "| egg (entropy) | saliency (answer_logprob) | saliency - egg |" in md
    assert "| pointing game \u2191 | 75 [" in md
    faithful = pd.read_csv(rep / "faithfulness.csv")
    assert set(faithful["method"]) == {"egg", "saliency", "saliency[entropy]"}
    assert math.isclose(faithful.set_index("method").loc["saliency[entropy]", "deletion_auc"], 0.25)


def test_the_command_line_writes_and_reports_the_scores(tmp_path, capsys):
    """``evaluate --faithfulness`` then ``report``, as a user types them (one scene, 4 steps)."""
    from egg_interp.cli import main

    out = tmp_path / "r.jsonl"
    argv = ["evaluate", "--dataset", "scenes", "--limit", "1", "--methods", "egg,raw_attention"]
    argv += ["--pipelines", "base", "--faithfulness", "deletion,insertion"]
    argv += ["--faithfulness-steps", "4", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "deletion_auc" in printed and "insertion_auc" in printed
    lines = [r for r in read_results(out) if r["kind"] == "map"]
    assert len(lines) == 2
    assert all(r["config"]["faithfulness"]["steps"] == 4 for r in lines)
    assert all({"deletion_auc", "insertion_auc"} <= set(r["scores"]) for r in lines)
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    assert "deletion AUC (MoRF)" in (tmp_path / "rep" / "faithfulness.md").read_text()
    assert main([*argv, "--faithfulness-orders", "morf,sideways"]) == 2
    assert "orders must be distinct names" in capsys.readouterr().err
