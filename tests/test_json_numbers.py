"""Numbers in JSON: one encoder (NaN -> null, +-inf -> "inf"/"-inf") and one decoder that also
reads the spellings of older files, shared by results lines, JSON outputs, the report and the
summaries."""

from __future__ import annotations

import json
import math

import numpy as np

from egg_interp.io import json_number, read_number, to_json, write_json
from egg_interp.report import load_frames
from egg_interp.results import ResultsWriter, clean, read_results
from egg_interp.summaries import sample_rows, step_values


def test_one_encoding_everywhere(tmp_path):
    obj = {"h": math.inf, "n": np.float32("nan"), "x": (1.5, -math.inf), "a": np.arange(2)}
    expected = {"h": "inf", "n": None, "x": [1.5, "-inf"], "a": [0, 1]}
    assert to_json(obj) == clean(obj) == expected
    assert [json_number(v) for v in (2.0, math.nan, math.inf)] == [2.0, None, "inf"]
    # write_json (steps.json, summary.json) writes what results lines hold
    write_json(tmp_path / "s.json", obj)
    assert json.loads((tmp_path / "s.json").read_text()) == expected
    assert "NaN" not in (tmp_path / "s.json").read_text()


def test_the_decoder_reads_every_spelling():
    values = [1, 0.25, True, False, None, "inf", "-inf", "Infinity", "-Infinity", "nan", "NaN"]
    got = [read_number(v) for v in values]
    assert got[:4] == [1.0, 0.25, 1.0, 0.0]
    assert math.isnan(got[4]) and got[5:9] == [math.inf, -math.inf, math.inf, -math.inf]
    assert math.isnan(got[9]) and math.isnan(got[10])
    assert math.isnan(read_number("x")) and math.isnan(read_number([1]))
    assert read_number(np.float32(0.5)) == 0.5
    for x in (0.5, math.inf, -math.inf):  # the round trip
        assert read_number(json.loads(json.dumps(json_number(x)))) == x
    assert math.isnan(read_number(json.loads(json.dumps(json_number(math.nan)))))


def _line(sample_id, score, pointing, entropy):
    return {
        "sample_id": sample_id,
        "kind": "map" if pointing is not None else "answer",
        "name": "egg",
        "config_hash": "c" * 16,
        "dataset": "d",
        "model": "m",
        "scores": {"pointing_game": pointing},
        "score": score,
        "steps": [{"spatial_entropy": entropy, "next_token_entropy": entropy}],
    }


def test_report_and_summaries_decode_a_line_alike(tmp_path):
    """Before, the report read a boolean score as 1.0 and the summaries as NaN."""
    path = tmp_path / "r.jsonl"
    raw = [
        _line("s1", True, True, "inf"),
        _line("s2", False, None, None),
        _line("s3", None, "nan", "-inf"),
    ]
    # a boolean score, and an old "nan" string (the spatial entropy was once written so)
    with ResultsWriter(path) as w:
        for line in raw:
            w.write(line)
    records = list(read_results(path))
    maps, answers = load_frames(path)
    rows = {r["id"]: r for r in sample_rows(records)}
    assert maps.set_index("sample_id").loc["s1", "pointing_game"] == 1.0
    assert rows["s1"]["pointing"]["egg"] == 1.0
    assert answers.set_index("sample_id").loc["s2", "score"] == 0.0 == rows["s2"]["correct"]["egg"]
    assert math.isnan(maps.set_index("sample_id").loc["s3", "pointing_game"])
    assert math.isnan(rows["s3"]["pointing"]["egg"])
    assert step_values(records[0]) == [math.inf] and step_values(records[2]) == [-math.inf]
