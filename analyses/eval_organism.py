"""Model-level acceptance figures of the organism on the scenes test split.

Usage::

    python analyses/eval_organism.py [--model DIR] [--n 200] [--out runs/organism/eval.json]

For each family it measures greedy one-word accuracy with

* ``full``: the full view alone;
* ``oracle``: the full view followed by a square crop around each evidence box (two crops
  for ``multi``; none where there is no evidence, i.e. ``existence`` answered "no");
* ``oracle_one`` (multi only): the full view and a crop of the first evidence box only;
* ``random``: the full view followed by as many crops of the same sizes at random places.

The model is loaded through ``AutoModelForImageTextToText`` / ``AutoProcessor`` and prompted
through the processor's chat template, as any user would (images first, then the question).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "analyses"))

from train_organism import answer, square_crop  # noqa: E402

from egg_interp.data import scenes  # noqa: E402
from egg_interp.organism import ORGANISM_DIR  # noqa: E402

CROP_SCALE = 1.5
"""Oracle crop: the evidence box's longer side times this, square, shifted into the image."""


def oracle_boxes(sample) -> list[tuple[int, int, int, int]]:
    return [square_crop(b, CROP_SCALE, sample.image.size, None) for b in sample.boxes]


def random_boxes(sample, rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    w, h = sample.image.size
    out = []
    for x0, _, x1, _ in oracle_boxes(sample):
        side = x1 - x0
        left, top = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        out.append((left, top, left + side, top + side))
    return out


@torch.no_grad()
def evaluate(model, processor, samples, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    hits: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    by_n: dict[str, list[float]] = defaultdict(list)
    for s in samples:
        image = s.image
        gold = s.answers[0]
        views = {
            "full": [],
            "oracle": oracle_boxes(s),
            "random": random_boxes(s, rng) if s.boxes else [],
        }
        if s.family == "multi":
            views["oracle_one"] = oracle_boxes(s)[:1]
        for name, boxes in views.items():
            images = [image] + [image.crop(b) for b in boxes]
            ok = float(answer(model, processor, images, s.question) == gold)
            hits[s.family][name].append(ok)
            if name == "full":
                by_n[f"{s.family}/{s.meta['n_objects']}"].append(ok)
    return {
        "accuracy": {
            f: {k: round(float(np.mean(v)), 4) for k, v in d.items()} for f, d in hits.items()
        },
        "full_by_n_objects": {k: round(float(np.mean(v)), 4) for k, v in sorted(by_n.items())},
        "n": {f: len(d["full"]) for f, d in hits.items()},
    }


def main(argv=None) -> int:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, default=ORGANISM_DIR)
    ap.add_argument("--n", type=int, default=200, help="test samples per family")
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "organism" / "eval.json")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    model = AutoModelForImageTextToText.from_pretrained(args.model).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    samples = scenes.load(split=args.split, per_family=args.n)
    res = evaluate(model, processor, samples)
    res.update(
        {
            "model": str(args.model),
            "split": args.split,
            "version": scenes.VERSION,
            "parameters": sum(p.numel() for p in model.parameters()),
            "seconds": round(time.time() - t0, 1),
        }
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    pipes = ["full", "oracle", "oracle_one", "random"]
    print(f"{'family':<10}" + "".join(f"{p:>11}" for p in pipes) + f"{'n':>6}")
    for fam in scenes.FAMILIES:
        row = res["accuracy"].get(fam, {})
        cells = "".join(f"{row[p]:>11.3f}" if p in row else f"{'':>11}" for p in pipes)
        print(f"{fam:<10}{cells}{res['n'].get(fam, 0):>6}")
    print(f"full view by number of objects: {res['full_by_n_objects']}")
    print(f"wrote {args.out} ({res['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
