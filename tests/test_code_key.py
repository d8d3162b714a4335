"""The results key follows the code: a recorded fingerprint of the results-affecting source,
a key that keeps unrecorded code apart, and resume over lines of other code."""

from __future__ import annotations

import json
import shutil

import pytest

from egg_interp import code_key as ck
from egg_interp.results import config_hash, read_results
from egg_interp.runner import evaluate


def test_the_recorded_fingerprint_is_the_sources():
    """The gate: a change to results-affecting code must record its decision."""
    now = ck.source_fingerprint()
    assert now == ck.RECORDED_SOURCE, (
        f"the results-affecting source of egg_interp changed (fingerprint {now}, recorded "
        f"{ck.RECORDED_SOURCE}). If the change can alter any results line (a map, a score, an "
        "answer, a config, the layout), run `python -m egg_interp.code_key --bump`: every "
        "results key changes and old lines are no longer reused. If it cannot (a refactor, "
        "shown equal by analyses/check_equivalence.py), run `python -m egg_interp.code_key "
        "--record`: keys stay."
    )
    assert ck.code_key() == f"results v{ck.RESULTS_VERSION}"


def _package(root):
    (root / "cli").mkdir(parents=True)
    (root / "maths.py").write_text('"""Maths."""\n\nSCALE = 2\n"""The scale."""\n')
    (root / "cli" / "main.py").write_text("HELP = 'x'\n")
    (root / "vocab.json").write_text('{"a": 1}')
    return root


def test_fingerprint_ignores_docs_comments_and_commands_but_not_code_or_data(tmp_path):
    root = _package(tmp_path / "pkg")
    before = ck.source_fingerprint(root)
    assert [f.name for f in ck.results_files(root)] == ["maths.py", "vocab.json"]
    maths = root / "maths.py"
    maths.write_text('"""Maths, reworded."""\n\n\nSCALE = 2  # why two\n"""The scale, again."""\n')
    (root / "cli" / "main.py").write_text("HELP = 'y'\n")  # commands write no results
    assert ck.source_fingerprint(root) == before
    maths.write_text('"""Maths."""\n\nSCALE = 3\n')
    changed = ck.source_fingerprint(root)
    assert changed != before
    (root / "vocab.json").write_text('{"a": 2}')
    assert ck.source_fingerprint(root) != changed


def test_the_real_package_counts_results_code_and_the_organism_files_only():
    names = {f.relative_to(ck.PACKAGE_DIR).as_posix() for f in ck.results_files()}
    assert {
        "runner.py",
        "loop/__init__.py",
        "loop/state.py",
        "methods/egg.py",
        "organism/weights/tokenizer.json",
    } <= names
    assert not {"report.py", "cli/args.py", "code_key.py", "organism/weights/model.safetensors"} & (
        names
    )


def test_unrecorded_source_gets_a_key_of_its_own(monkeypatch):
    ck.code_key.cache_clear()
    monkeypatch.setattr(ck, "RECORDED_SOURCE", "0000000000000000")
    try:
        key = ck.code_key()
        assert key.startswith(f"results v{ck.RESULTS_VERSION}+") and len(key.split("+")[1]) == 16
    finally:
        ck.code_key.cache_clear()


def test_record_and_bump_rewrite_the_two_constants(tmp_path):
    copy = tmp_path / "code_key.py"
    shutil.copy(ck.__file__, copy)
    ck.rewrite(7, "abcdef0123456789", copy)
    text = copy.read_text()
    assert "\nRESULTS_VERSION = 7\n" in text
    assert '\nRECORDED_SOURCE = "abcdef0123456789"\n' in text


def _as_old_code(path, code):
    """Rewrite a results file as if another version of the results code had written it."""
    lines = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        record["config"]["code"] = code
        record["config_hash"] = config_hash(record["config"])
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")


def test_resuming_lines_of_other_code_warns_and_writes_fresh_lines(tiny_llava, tmp_path):
    from egg_interp.data import scenes

    samples = scenes.load(split="test", limit=2)
    kwargs = dict(methods=["saliency"], pipelines=[], progress=False, model="tiny")
    out = tmp_path / "r.jsonl"
    assert evaluate(tiny_llava, samples, out=out, **kwargs).written == 2
    _as_old_code(out, "egg_interp 0.1.0, results schema 1")
    with pytest.warns(RuntimeWarning, match=r"2 line\(s\) come from other results code") as rec:
        again = evaluate(tiny_llava, samples, out=out, **kwargs)
    assert len(rec) == 1 and "\n" not in str(rec[0].message)
    assert "writes fresh lines" in str(rec[0].message)
    assert again.written == 2 and again.skipped == 0  # nothing of the old code is reused
    codes = [r["config"]["code"] for r in read_results(out)]
    assert codes.count("egg_interp 0.1.0, results schema 1") == 2
    assert codes.count(ck.code_key()) == 2
