"""Check that a refactor leaves results unchanged: record a scripted set of runs, then compare.

The runs go through the command line (the interface a refactor must keep): the model organism
on its ``scenes`` benchmark, every map method and every answer pipeline, at batch 1 and at
batch 8, each followed by ``egg-interp report``. ``record DIR`` writes them into ``DIR``;
``compare DIR OTHER`` prints every difference between two recordings, after dropping what
differs between any two runs of the same code (timings, run info, hashes and code versions)::

    python analyses/check_equivalence.py record /tmp/before   # on the old commit
    python analyses/check_equivalence.py record /tmp/after    # on the new one
    python analyses/check_equivalence.py compare /tmp/before /tmp/after

Exit status 0 when the two recordings hold the same results lines (as normalised JSON), the
same report tables (CSV and markdown, byte for byte but for their ``seconds`` columns) and
the same saved maps. ``--skip``
leaves methods out of the comparison (e.g. ones whose noise is not seeded).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

METHODS = (
    "egg,saliency,input_x_gradient,integrated_gradients,gradient_shap,smoothgrad,occlusion,"
    "gradcam,raw_attention,attention_rollout,rel_att,grad_att,pure_grad"
)
PIPELINES = "base,egg,vicrop,oracle,oracle_one,random,random_egg"
VOLATILE = {"timing", "run", "config_hash", "seconds", "code_version", "code", "map_file"}
"""Keys dropped at any depth: they differ between two runs of the same code."""


def _cli(*args: str) -> None:
    exe = Path(sys.executable).with_name("egg-interp")
    env = {**os.environ, "EGG_INTERP_THREADS": os.environ.get("EGG_INTERP_THREADS", "1")}
    subprocess.run([str(exe), *args], check=True, env=env)


def record(out: Path, limit: int) -> None:
    """Run the scripted evaluations and reports into ``out``."""
    for batch in (1, 8):
        run = out / f"batch{batch}"
        run.mkdir(parents=True, exist_ok=True)
        _cli(
            "evaluate",
            "--dataset",
            "scenes",
            "--limit",
            str(limit),
            "--methods",
            METHODS,
            "--pipelines",
            PIPELINES,
            "--batch-size",
            str(batch),
            "--out",
            str(run / "results.jsonl"),
            "--save-maps",
            str(run / "maps"),
            "--no-progress",
        )
        _cli("report", str(run / "results.jsonl"), "--out", str(run / "report"), "--grids", "0")


def _normalised(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: _normalised(v) for k, v in sorted(obj.items()) if k not in VOLATILE}
    if isinstance(obj, list):
        return [_normalised(v) for v in obj]
    return obj


def _rows(path: Path, skip: frozenset[str] = frozenset()) -> list[dict]:
    rows = [_normalised(json.loads(line)) for line in path.read_text().splitlines() if line]
    rows = [r for r in rows if r["name"] not in skip]
    return sorted(rows, key=lambda r: (r["sample_id"], r["kind"], r["name"]))


def _restricted(obj: object, like: object, added: set[str], path: str = "") -> object:
    """``obj`` with the dictionary keys that ``like`` lacks dropped (their paths go to
    ``added``): fields a newer version records on top of the old ones."""
    if isinstance(obj, dict) and isinstance(like, dict):
        added.update(f"{path}.{k}" for k in obj if k not in like)
        return {
            k: _restricted(v, like[k], added, f"{path}.{k}") for k, v in obj.items() if k in like
        }
    if isinstance(obj, list) and isinstance(like, list) and len(obj) == len(like):
        return [_restricted(v, w, added, path) for v, w in zip(obj, like)]
    return obj


def _lines(rows: list[dict]) -> list[str]:
    return [json.dumps(r, sort_keys=True) for r in rows]


def _maps(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """Saved maps by ``method/sample`` (the config-hash folder left out); the JSON header's
    volatile keys (seconds) dropped."""
    out = {}
    for f in sorted(root.glob("*/*/*.npz")):
        with np.load(f) as z:
            arrays = {k: z[k] for k in z.files}
        if "header" in arrays:
            header = json.loads(arrays["header"].tobytes().decode())
            arrays["header"] = np.frombuffer(
                json.dumps(_normalised(header), sort_keys=True).encode(), np.uint8
            )
        out[f"{f.parts[-3]}/{f.name}"] = arrays
    return out


def _table_text(path: Path, recording: Path) -> list[str]:
    """A report table's lines with the cells of timing columns (named ``seconds``) blanked and
    the recording's own folder replaced by ``<recording>``."""
    sep = "," if path.suffix == ".csv" else "|"
    out, drop = [], set()
    lines = path.read_text().replace(str(recording), "<recording>").splitlines()
    for i, line in enumerate(lines):
        cells = line.split(sep)
        is_header = (sep == "," and i == 0) or (
            sep == "|" and i + 1 < len(lines) and lines[i + 1].startswith("|--")
        )
        if is_header:
            drop = {j for j, c in enumerate(cells) if "seconds" in c}
        elif not line.strip():
            drop = set()
        out.append(sep.join("" if j in drop else c for j, c in enumerate(cells)))
    return out


def compare(a: Path, b: Path, skip: frozenset[str] = frozenset(), new_fields: bool = False) -> int:
    """Print the differences between two recordings; return how many there are.

    ``new_fields``: fields that only the second recording's lines hold are left out (and
    listed), for code that records more on top of the old fields."""
    problems = 0
    for run in sorted(p.name for p in a.iterdir() if p.is_dir()):
        ra, rb = _rows(a / run / "results.jsonl", skip), _rows(b / run / "results.jsonl", skip)
        if new_fields:
            added: set[str] = set()
            rb = [_restricted(y, x, added) for x, y in zip(ra, rb)] + rb[len(ra) :]
            print(f"{run}: fields only in {b.name}'s lines (left out): {sorted(added)}")
        la, lb = _lines(ra), _lines(rb)
        for x, y in zip(la, lb):
            if x != y:
                problems += 1
                print(f"{run}: results line differs:\n  - {x[:400]}\n  + {y[:400]}")
        if len(la) != len(lb):
            problems += 1
            print(f"{run}: {len(la)} lines against {len(lb)}")
        for fa in sorted((a / run / "report").rglob("*")):
            if fa.suffix not in (".csv", ".md") or not fa.is_file():
                continue
            fb = b / run / "report" / fa.relative_to(a / run / "report")
            ta, tb = _table_text(fa, a), _table_text(fb, b) if fb.exists() else None
            if new_fields and tb is not None and tb[: len(ta)] == ta and len(tb) > len(ta):
                print(f"{run}: {fb.relative_to(b)} adds {len(tb) - len(ta)} line(s) at its end")
                continue
            if tb is None or ta != tb:
                problems += 1
                print(f"{run}: report file differs or is missing: {fa.relative_to(a)}")
        ma, mb = _maps(a / run / "maps"), _maps(b / run / "maps")
        ma = {k: v for k, v in ma.items() if k.split("/")[0] not in skip}
        mb = {k: v for k, v in mb.items() if k.split("/")[0] not in skip}
        if sorted(ma) != sorted(mb):
            problems += 1
            print(f"{run}: saved maps differ in names: {sorted(set(ma) ^ set(mb))[:6]}")
        for name in sorted(set(ma) & set(mb)):
            za, zb = ma[name], mb[name]
            if new_fields and "header" in za and "header" in zb:
                ha, hb = (json.loads(z["header"].tobytes().decode()) for z in (za, zb))
                hb = _restricted(hb, ha, set())
                zb = {
                    **zb,
                    "header": np.frombuffer(json.dumps(hb, sort_keys=True).encode(), np.uint8),
                }
            same = sorted(za) == sorted(zb) and all(
                np.array_equal(za[k], zb[k], equal_nan=za[k].dtype.kind == "f") for k in za
            )
            if not same:
                problems += 1
                print(f"{run}: saved map differs: {name}")
    print(f"{problems} difference(s)")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record", help="run the scripted evaluations into DIR")
    rec.add_argument("dir", type=Path)
    rec.add_argument("--limit", type=int, default=16, help="scenes per run (default: 16)")
    cmp = sub.add_parser("compare", help="differences between two recordings")
    cmp.add_argument("before", type=Path)
    cmp.add_argument("after", type=Path)
    cmp.add_argument("--skip", default="", help="comma-separated methods left out")
    cmp.add_argument(
        "--new-fields",
        action="store_true",
        help="leave out the fields only AFTER's lines hold (code that records more)",
    )
    args = ap.parse_args(argv)
    if args.cmd == "record":
        record(args.dir, args.limit)
        return 0
    skip = frozenset(m for m in args.skip.split(",") if m)
    return 1 if compare(args.before, args.after, skip, args.new_fields) else 0


if __name__ == "__main__":
    sys.exit(main())
