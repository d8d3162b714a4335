"""The report: tables computed by hand on a fixture results file, figures, grids, the script."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pandas as pd
import pytest
from eval_helpers import make_vstar

from egg_interp.cli import main
from egg_interp.report import (
    accuracy_long,
    accuracy_table,
    bucket_table,
    load_frames,
    pointing_game_table,
    pope_table,
    write_report,
)
from egg_interp.results import ResultsWriter

SCORES = (
    "pointing_game",
    "energy_pointing_game",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "auc",
    "region_iou",
    "region_hit",
    "any_box_hit",
    "all_boxes_covered",
)


def map_line(sid, name, pg, config="c1", n_boxes=1, bucket="small", family="a", error="", **s):
    scores = {k: s.get(k, pg) for k in SCORES}
    return {
        "sample_id": sid,
        "kind": "map",
        "name": name,
        "config_hash": config * 8,
        "dataset": "vstar",
        "split": "default",
        "model": "m",
        "index": int(sid[1:]),
        "family": family,
        "boxes": [[0, 0, 1, 1]] * n_boxes,
        "box_source": "annotation",
        "size_bucket": bucket,
        "evidence_area": 0.001,
        "error": error,
        "scores": {} if error else scores,
        "timing": {"total": 2.0},
    }


def answer_line(sid, name, score, dataset="vstar", answer="", answers=("x",), **extra):
    return {
        "sample_id": sid,
        "kind": "answer",
        "name": name,
        "config_hash": name * 4,
        "dataset": dataset,
        "split": "default",
        "model": "m",
        "index": int(sid[1:]),
        "family": extra.get("family", "a"),
        "boxes": [],
        "size_bucket": extra.get("bucket", "none"),
        "error": "",
        "score": score,
        "answer": answer,
        "answers": list(answers),
        "metric": "pope" if dataset == "pope" else "multiple_choice",
        "crops": [],
        "steps": [],
    }


@pytest.fixture()
def results(tmp_path):
    path = tmp_path / "results.jsonl"
    lines = [
        # egg: hit on a small box, miss on a two-box (medium) sample, no boxes, one failure
        map_line("s1", "egg", 1.0, auc=0.9),
        map_line("s2", "egg", 0.0, n_boxes=2, bucket="medium", family="b", all_boxes_covered=1.0),
        map_line("s3", "egg", None, n_boxes=0, bucket="none"),
        map_line("s4", "egg", None, error="RuntimeError: boom"),
        # saliency under two configs: the labels must tell them apart
        map_line("s1", "saliency", 0.0, config="a"),
        map_line("s1", "saliency", 1.0, config="b"),
        # V*: base 1/2, egg 2/2, vicrop 1/2
        answer_line("s1", "base", 1.0, bucket="small"),
        answer_line("s2", "base", 0.0, bucket="medium", family="b"),
        answer_line("s1", "egg", 1.0, bucket="small"),
        answer_line("s2", "egg", 1.0, bucket="medium", family="b"),
        answer_line("s1", "vicrop", 0.0, bucket="small"),
        answer_line("s2", "vicrop", 1.0, bucket="medium", family="b"),
        # POPE: base right on 1 of 3 (one unparseable answer), egg right on all
        answer_line("p1", "base", 1.0, "pope", "yes", ["yes"]),
        answer_line("p2", "base", 0.0, "pope", "yes", ["no"]),
        answer_line("p3", "base", 0.0, "pope", "maybe", ["yes"]),
        answer_line("p1", "egg", 1.0, "pope", "yes", ["yes"]),
        answer_line("p2", "egg", 1.0, "pope", "no", ["no"]),
        answer_line("p3", "egg", 1.0, "pope", "Yes.", ["yes"]),
    ]
    with ResultsWriter(path) as w:
        for line in lines:
            w.write(line)
        w.write(lines[0])  # a duplicate key (e.g. two merged parts) counts once
    return path


def test_pointing_game_table_by_hand(results):
    maps, _ = load_frames(results)
    table = pointing_game_table(maps).set_index("method")
    egg = table.loc["egg"]
    assert (egg["n"], egg["errors"], egg["n_scored"]) == (4, 1, 2)
    assert egg["pointing_game"] == 0.5  # (1 + 0) / 2: no-box sample skipped, error excluded
    assert egg["auc"] == pytest.approx((0.9 + 0.0) / 2)
    assert egg["all_boxes_covered"] == 1.0 and egg["n_multi"] == 1  # multi-evidence only
    assert egg["seconds"] == 2.0
    assert table.loc["saliency@aaaaaa", "pointing_game"] == 0.0
    assert table.loc["saliency@bbbbbb", "pointing_game"] == 1.0


def test_accuracy_table_in_table1_layout(results):
    _, answers = load_frames(results)
    table = accuracy_table(answers)
    assert list(table.columns) == ["model", "pipeline", "V*", "POPE"]
    rows = {r["pipeline"]: r for r in table.to_dict("records")}
    assert list(rows) == ["base", "+ViCrop", "+EGG"]
    assert rows["base"]["V*"] == "50.00" and rows["base"]["POPE"] == "33.33"
    assert rows["+ViCrop"]["V*"] == "50.00 (+0.00)" and rows["+ViCrop"]["POPE"] == "-"
    assert rows["+EGG"]["V*"] == "100.00 (+50.00)" and rows["+EGG"]["POPE"] == "100.00 (+66.67)"
    long = accuracy_long(answers).set_index(["dataset", "pipeline"])
    assert long.loc[("pope", "egg"), "delta_vs_base"] == pytest.approx(2 / 3)
    assert long.loc[("vstar", "base"), "n_scored"] == 2


def test_pope_table_by_hand(results):
    _, answers = load_frames(results)
    pope = pope_table(answers).set_index("pipeline")
    base = pope.loc["base"]
    # parsed yes, yes, unparsed vs truth yes, no, yes: tp 1, fp 1, fn 1
    assert (base["precision"], base["recall"], base["f1"]) == (0.5, 0.5, 0.5)
    assert base["yes_ratio"] == pytest.approx(2 / 3) and base["n_unparsed"] == 1
    assert pope.loc["egg", "accuracy"] == 1.0


def test_size_bucket_and_family_tables_by_hand(results):
    maps, answers = load_frames(results)
    pg = bucket_table(maps, "pointing_game").set_index("name").loc["egg"]
    assert (pg["small"], pg["n_small"], pg["medium"], pg["n_medium"]) == (1.0, 1, 0.0, 1)
    assert math.isnan(pg["large"]) and pg["n_large"] == 0
    acc = bucket_table(answers, "score").set_index(["dataset", "name"])
    assert acc.loc[("vstar", "vicrop"), "small"] == 0.0
    assert acc.loc[("vstar", "vicrop"), "medium"] == 1.0
    fam = bucket_table(answers, "score", "family").set_index(["dataset", "name"])
    assert fam.loc[("vstar", "base"), "a"] == 1.0 and fam.loc[("vstar", "base"), "b"] == 0.0


def test_report_writes_tables_figures_and_index(results, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(results), "--out", str(out)]) == 0
    for name in ("pointing_game", "accuracy", "pope", "size_buckets_pointing_game"):
        assert (out / f"{name}.md").exists() and (out / f"{name}.csv").exists()
    for png in ("pointing_game", "accuracy", "size_buckets_accuracy", "families_accuracy"):
        assert (out / f"{png}.png").stat().st_size > 5000
    assert "| m | base | 50.00 | 33.33 |" in (out / "accuracy.md").read_text()
    csv = pd.read_csv(out / "pointing_game.csv").set_index("method")
    assert csv.loc["egg", "pointing_game"] == 0.5
    md = (out / "pointing_game.md").read_text()
    assert "| m | vstar | egg | 4 | 1 | 2 | 50.0 |" in md
    index = (out / "report.md").read_text()
    assert "Table 1 layout" in index and "![accuracy](accuracy.png)" in index
    assert main(["report", str(tmp_path / "missing.jsonl"), "--out", str(out)]) == 2


def test_grids_from_saved_maps_or_recomputed(tiny_llava_dir, tmp_path):
    root = make_vstar(tmp_path / "vstar", n=3)
    results = tmp_path / "r.jsonl"
    args = ["evaluate", "--model", str(tiny_llava_dir), "--dataset", "vstar"]
    args += ["--data-root", str(root), "--methods", "egg,saliency", "--pipelines", "base"]
    args += ["--out", str(results), "--save-maps", str(tmp_path / "maps"), "--no-progress"]
    assert main(args) == 0
    written = write_report(results, tmp_path / "rep", grids=2, figures=False)
    grids = sorted(p.name for p in written if p.parent.name == "grids")
    assert grids == ["000_direct_attributes_sa_000.png", "001_direct_attributes_sa_001.png"]
    for npz in (tmp_path / "maps").rglob("*.npz"):
        npz.unlink()
    write_report(results, tmp_path / "rep2", grids=1, figures=False)  # the recorded model
    assert (tmp_path / "rep2" / "grids" / "000_direct_attributes_sa_000.png").exists()
    write_report(results, tmp_path / "rep3", grids=1, figures=False, model=str(tiny_llava_dir))
    assert (tmp_path / "rep3" / "grids" / "000_direct_attributes_sa_000.png").exists()


def test_analysis_script_runs_on_a_tiny_model(tiny_llava_dir, tmp_path):
    script = Path(__file__).resolve().parents[1] / "analyses" / "eval_scenes.py"
    spec = importlib.util.spec_from_file_location("eval_scenes", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    figures = tmp_path / "figures"
    argv = ["--model", str(tiny_llava_dir), "--limit", "2", "--methods", "egg"]
    argv += ["--pipelines", "base,egg,oracle", "--stop", "fixed:2", "--grids", "2"]
    argv += ["--results", str(tmp_path / "runs" / "results.jsonl"), "--figures", str(figures)]
    assert module.main([*argv, "--no-progress"]) == 0
    assert (figures / "accuracy.md").exists() and (figures / "pointing_game.png").exists()
    assert len(list((figures / "grids").glob("*.png"))) == 2
    assert "Scenes" in (figures / "accuracy.md").read_text()


def test_table1_script_runs_on_a_tiny_model(tiny_llava_dir, tmp_path):
    script = Path(__file__).resolve().parents[1] / "analyses" / "eval_table1.py"
    spec = importlib.util.spec_from_file_location("eval_table1", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    figures = tmp_path / "figures"
    argv = ["--model", str(tiny_llava_dir), "--datasets", "scenes,bogus", "--limit", "2"]
    argv += ["--pipelines", "base", "--methods", "egg", "--data-root", str(tmp_path)]
    argv += ["--results-dir", str(tmp_path / "runs"), "--figures", str(figures)]
    assert module.main([*argv, "--no-progress"]) == 0  # the unknown dataset is skipped
    assert (tmp_path / "runs" / "scenes.jsonl").exists()
    assert "Scenes" in (figures / "accuracy.md").read_text()


def test_report_names_its_results_file_relative_to_the_project(tmp_path, monkeypatch):
    from egg_interp.report import _display_path

    monkeypatch.chdir(tmp_path)
    inside = tmp_path / "runs" / "results.jsonl"
    assert _display_path(inside) == "runs/results.jsonl"
    assert _display_path("/elsewhere/results.jsonl") == "/elsewhere/results.jsonl"


# ------------------------------------------------------------------ registry-driven parts


def _faithful_line(sid, name, deletion, insertion, target="entropy", config="c1"):
    """A map line with the registry's deletion and insertion AUCs (MoRF) and deletion gap."""
    line = map_line(sid, name, 1.0, config=config)
    line["target"] = target
    line["scores"].update(
        deletion_auc=deletion, insertion_auc=insertion, deletion_gap=insertion - deletion
    )
    return line


def test_faithfulness_table_and_plot_from_synthetic_lines(tmp_path):
    from egg_interp.metrics.intervals import interval

    path = tmp_path / "r.jsonl"
    egg = [(0.1, 0.8), (0.2, 0.6), (0.3, 0.7)]
    saliency = [(0.4, 0.5), (0.6, 0.3), (0.5, 0.4)]
    with ResultsWriter(path) as w:
        for i, (d, ins) in enumerate(egg):
            w.write(_faithful_line(f"s{i}", "egg", d, ins))
        for i, (d, ins) in enumerate(saliency):  # saliency explained the entropy: labelled so
            w.write(_faithful_line(f"s{i}", "saliency", d, ins, target="logprob"))
    out = tmp_path / "rep"
    write_report(path, out)
    table = pd.read_csv(out / "faithfulness.csv").set_index("method")
    assert list(table.index) == ["egg", "saliency[logprob]"]
    assert list(table["target"]) == ["entropy", "logprob"]
    assert table.loc["egg", "deletion_auc"] == pytest.approx(0.2)
    assert table.loc["saliency[logprob]", "insertion_auc"] == pytest.approx(0.4)
    assert table.loc["egg", "deletion_gap"] == pytest.approx(0.5)
    lo, hi = interval([0.1, 0.2, 0.3], proportion=False)["ci95"]
    assert (table.loc["egg", "deletion_auc_lo"], table.loc["egg", "deletion_auc_hi"]) == (
        pytest.approx(lo),
        pytest.approx(hi),
    )
    assert lo < 0.2 < hi
    md = (out / "faithfulness.md").read_text()
    # the scores the lines hold, in declaration order, with their labels and arrows
    assert (
        "| deletion AUC (MoRF) \u2193 | deletion MoRF-LeRF gap \u2191 | insertion AUC (MoRF) "
        "\u2191 |" in md
    )
    assert f"| egg | entropy | 3 | 0 | 3 | 0.2 [{lo:.3g}, {hi:.3g}] |" in md
    assert (out / "faithfulness.png").stat().st_size > 5000
    assert "## Faithfulness per method" in (out / "report.md").read_text()
    # the localisation table is as before, with the new label
    assert "saliency[logprob]" in (out / "pointing_game.md").read_text()


def test_no_faithfulness_table_without_such_scores(results, tmp_path):
    out = tmp_path / "rep"
    write_report(results, out, figures=False)
    assert not (out / "faithfulness.md").exists()
    assert "Faithfulness" not in (out / "report.md").read_text()


def test_labels_name_a_target_that_is_not_the_default(tmp_path):
    path = tmp_path / "r.jsonl"
    lines = [
        _target_line("egg", "entropy", "e"),
        _target_line("saliency", "entropy", "a"),
        _target_line("saliency", "logprob", "b"),
        _target_line("rel_att", "none", "r"),
        _target_line("grad_att", "logprob", "g"),  # its default: no bracket
        _target_line("grad_att", "logprob", "h"),  # a second config of one label: the hash
    ]
    with ResultsWriter(path) as w:
        for line in lines:
            w.write(line)
    maps, _ = load_frames(path)
    assert sorted(pointing_game_table(maps)["method"]) == [
        "egg",
        "grad_att@gggggg",
        "grad_att@hhhhhh",
        "rel_att",
        "saliency[entropy]",  # the captum baselines' default is the answer's log-probability
        "saliency[logprob]",
    ]


def _target_line(name, target, config):
    line = map_line("s1", name, 1.0, config=config)
    line["target"] = target
    return line


def test_default_targets_mirror_the_methods():
    from egg_interp.methods import METHODS
    from egg_interp.titles import DEFAULT_TARGETS

    expected = {n: c.default_target if c.uses_target else "none" for n, c in METHODS.items()}
    assert DEFAULT_TARGETS == expected
