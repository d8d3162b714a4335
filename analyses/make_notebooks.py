"""Write (and optionally execute) the project's notebooks from the cell sources below.

The notebooks are generated so that their code stays reviewable here; the committed
``.ipynb`` files carry the outputs of a full run:

    python analyses/make_notebooks.py --execute            # full run (EGG_NB_N samples)
    EGG_NB_N=3 python analyses/make_notebooks.py --execute --out /tmp/nb   # quick check
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]

ABLATION = [
    (
        "md",
        """# Ablating the stopping rules of the zoom-and-reground loop

EGG refines its crops step by step; a *stopping rule* decides when to stop and which step's
crops to keep. This notebook compares the rules on the model organism's scenes benchmark
(set `MODEL`, `DATASET` and `DATA_ROOT` below, or the `EGG_NB_*` environment variables, for
any model and dataset the runner supports):

* **spatial entropy** (`ent`, the paper's default): stop when the spatial entropy of the
  original image's map rises; keep the crops from before the rise;
* **fixed 1 / 2 / 3 / 4 steps** (`fixed:N`);
* **minimum crop area** (`area:4000`): stop once a crop is at most 4000 px;
* **top-1 probability** (`prob`): stop when the model's top-1 probability stops rising;
* **no refinement** (`none`): the original image alone.

The loop is deterministic, so every rule follows the same trajectory until it stops: we run
the loop once per sample for `MAX_STEPS` steps and replay each rule on the step log. A rule's
cost is the time of the steps it used plus its final answer.""",
    ),
    (
        "code",
        """import os, time, math
import numpy as np, pandas as pd, matplotlib.pyplot as plt, seaborn as sns
import transformers
transformers.utils.logging.disable_progress_bar()

MODEL = os.environ.get("EGG_NB_MODEL", "organism")
DATASET = os.environ.get("EGG_NB_DATASET", "scenes")
DATA_ROOT = os.environ.get("EGG_NB_DATA_ROOT")
N = int(os.environ.get("EGG_NB_N", "200"))       # samples (a balanced prefix for the scenes)
MAX_STEPS = 6
RULES = {"spatial entropy": "ent", "fixed 1": "fixed:1", "fixed 2": "fixed:2",
         "fixed 3": "fixed:3", "fixed 4": "fixed:4", "min crop area": "area:4000",
         "top-1 prob": "prob", "no refinement": "none"}
sns.set_theme(style="whitegrid", context="notebook")""",
    ),
    (
        "code",
        """from egg_interp.models import load_model
from egg_interp.data.registry import load_dataset, answer_metric
from egg_interp.metrics import ANSWER_METRICS

adapter = load_model(MODEL)
samples = load_dataset(DATASET, DATA_ROOT, split="test", limit=N)
score = ANSWER_METRICS[answer_metric(DATASET)]
print(f"{len(samples)} samples of {DATASET}; model {MODEL}")""",
    ),
    (
        "code",
        """from egg_interp.loop import zoom_and_reground, answer_with_crops
from egg_interp.stopping import make_rule
from egg_interp.metrics import box_hits

def crop_hit(crops, boxes, tol=15.0):
    \"\"\"Pointing game of the final top crop: its centre within tol px of an evidence box.\"\"\"
    if not crops or not boxes:
        return math.nan
    x0, y0, x1, y1 = crops[0]
    return float(box_hits(((x0 + x1) / 2, (y0 + y1) / 2), boxes, tolerance=tol).any())

rows, traces = [], []
for s in samples:
    image = s.image
    res = zoom_and_reground(adapter, image, s.question, stop=f"fixed:{MAX_STEPS}", keep_maps=False)
    answers = {}
    for label, spec in RULES.items():
        rule = make_rule(spec, max_steps=MAX_STEPS)
        rule.prepare(image.size)
        used, decision = 0, rule.decide([])
        while not decision.stop and used < len(res.steps):
            used += 1
            decision = rule.decide(res.steps[:used])
        crops = next((st.crop_boxes for st in res.steps if st.step == decision.keep), [])
        key = tuple(map(tuple, crops))
        t0 = time.perf_counter()
        if key not in answers:
            answers[key] = answer_with_crops(adapter, image, s.question, crops, max_new_tokens=5)
        t_answer = time.perf_counter() - t0
        ans = answers[key]
        rows.append(dict(sample=s.id, family=s.family or "all", rule=label, steps=used,
                         seconds=sum(st.seconds for st in res.steps[:used]) + t_answer,
                         correct=float(score(ans, s.answers)), crop_pg=crop_hit(crops, s.boxes)))
    traces.append(dict(sample=s.id, family=s.family,
                       entropy=[st.spatial_entropy for st in res.steps],
                       correct=next(r["correct"] for r in rows[::-1] if r["rule"] == "spatial entropy" and r["sample"] == s.id)))
df = pd.DataFrame(rows)
df.head()""",
    ),
    ("md", "## Accuracy, crop pointing game, steps and time per rule"),
    (
        "code",
        """summary = df.groupby("rule", sort=False).agg(
    accuracy=("correct", "mean"), crop_pointing_game=("crop_pg", "mean"),
    mean_steps=("steps", "mean"), seconds_per_sample=("seconds", "mean"))
by_family = df.pivot_table(index="rule", columns="family", values="correct", aggfunc="mean", sort=False)
display(summary.round(3)); display(by_family.round(3))""",
    ),
    (
        "code",
        """fig, ax = plt.subplots(1, 2, figsize=(12, 4))
sns.scatterplot(data=summary.reset_index(), x="seconds_per_sample", y="accuracy", hue="rule", s=90, ax=ax[0], legend=False)
for rule, r in summary.iterrows():
    ax[0].annotate(rule, (r.seconds_per_sample, r.accuracy), xytext=(4, 4), textcoords="offset points", fontsize=8)
ax[0].set(title="accuracy against cost", xlabel="seconds per sample", ylabel="answer accuracy")
sns.barplot(data=df, x="family", y="correct", hue="rule", errorbar=("ci", 95), ax=ax[1])
ax[1].set(title="accuracy by question family (95% bootstrap CI)", ylabel="accuracy")
ax[1].legend(fontsize=7, ncol=2)
fig.tight_layout()""",
    ),
    (
        "md",
        "## Spatial-entropy traces\n\nThe value the default rule watches, per step, for a handful of samples; colour = whether the `ent` rule's answer was right.",
    ),
    (
        "code",
        """fig, ax = plt.subplots(figsize=(6, 3.5))
for t in traces[:12]:
    ys = [v if np.isfinite(v) else np.nan for v in t["entropy"]]
    ax.plot(range(len(ys)), ys, marker="o", color="tab:green" if t["correct"] else "tab:red", alpha=0.7)
ax.set(xlabel="step", ylabel="spatial entropy of the original's map", title="green = right, red = wrong")
fig.tight_layout()""",
    ),
    ("md", "## One sample's crop sequence"),
    (
        "code",
        """from egg_interp.figures.grounding import plot_grounding
from egg_interp.loop import ground
s = next((x for x in samples if x.family == "detail"), samples[0])
res = ground(adapter, s.image, s.question, max_new_tokens=5)
fig = plot_grounding(s.image, res, gt_boxes=s.boxes)
print("truth:", s.answers, "| base:", res.base_answer, "| egg:", res.answer, "|", res.decision.reason)""",
    ),
    ("md", "## Conclusion (computed from the table above)"),
    (
        "code",
        """best = summary["accuracy"].idxmax()
ent, none = summary.loc["spatial entropy"], summary.loc["no refinement"]
cheapest_close = summary[summary["accuracy"] >= summary["accuracy"].max() - 0.02]["seconds_per_sample"].idxmin()
print(f"On {len(samples)} samples, the most accurate rule is '{best}' ({summary.loc[best, 'accuracy']:.3f}); "
      f"spatial entropy reaches {ent.accuracy:.3f} in {ent.mean_steps:.2f} steps on average "
      f"({ent.seconds_per_sample / max(none.seconds_per_sample, 1e-9):.1f}x the cost of no refinement, "
      f"which scores {none.accuracy:.3f}). The cheapest rule within 2 points of the best is '{cheapest_close}'.")""",
    ),
]

QUICKSTART = [
    (
        "md",
        """# Quick start: where does the model look?

Load the embedded model organism (a small LLaVA-architecture VLM trained on synthetic scenes),
ask it a question about a scene, and look at its entropy-gradient map, the regions EGG
extracts, the zoom-and-reground steps and the answers with and without the crops.""",
    ),
    (
        "code",
        """import os
import matplotlib.pyplot as plt
import transformers
from egg_interp.models import load_model
from egg_interp.data import scenes

transformers.utils.logging.disable_progress_bar()
adapter = load_model(os.environ.get("EGG_NB_MODEL", "organism"))
sample = scenes.load(split="test", limit=3, families=["detail"])[1]
image = sample.image
print(sample.question, "->", sample.answers, "| evidence:", sample.boxes)""",
    ),
    (
        "code",
        """from egg_interp.methods import attribute
amap = attribute(adapter, image, sample.question, method="egg")
print("grid", amap.grid.shape, "| top-1:", amap.meta["top1_token"], f"p={amap.meta['top1_prob']:.2f}",
      f"| next-token entropy {amap.meta['next_token_entropy']:.2f}")
fig, ax = amap.plot(image=image, boxes=sample.boxes, title="EGG map (green = evidence)")""",
    ),
    (
        "code",
        """from egg_interp.regions import find_regions
from egg_interp.figures.drawing import draw_boxes
view = amap.images[0].primary
regions = find_regions(view.values, view.cell_boxes, image.size, top_k=2)
for r in regions:
    print(f"#{r.rank + 1} score {r.score:.3g} box {tuple(round(v) for v in r.box)}")
fig, ax = plt.subplots(figsize=(4, 4)); ax.imshow(image); ax.set_axis_off()
draw_boxes(ax, sample.boxes, color="lime"); draw_boxes(ax, [r.box for r in regions], color="cyan", labels=["#1", "#2"][: len(regions)])""",
    ),
    (
        "code",
        """from egg_interp.loop import ground
from egg_interp.figures.grounding import plot_grounding
result = ground(adapter, image, sample.question, max_new_tokens=5)
for st in result.steps:
    print(f"step {st.step}: spatial entropy {st.spatial_entropy:.3f}, p(top-1) {st.top1_prob:.2f} ({st.top1_token!r}), crops {[tuple(round(v) for v in b) for b in st.crop_boxes]}")
print(result.decision.reason, "| base answer:", result.base_answer, "| EGG answer:", result.answer, "| truth:", sample.answers)
fig = plot_grounding(image, result, gt_boxes=sample.boxes)""",
    ),
    (
        "md",
        """## The same on a real checkpoint

Set `REAL_MODEL` to a Hugging Face id or a local directory of a supported architecture
(`llava`, `llava_next`, `qwen2_5_vl`, `internvl`, ...) and `IMAGE` to an image file; on a GPU
pass `device="cuda"` (bfloat16 by default there). LLaVA-1.5 wants the suffix
"Answer the question using a single word or phrase.". The cell does nothing when
`REAL_MODEL` is unset (as in the test-suite, which has no hub access).""",
    ),
    (
        "code",
        """REAL_MODEL = os.environ.get("EGG_NB_REAL_MODEL")   # e.g. "llava-hf/llava-1.5-7b-hf"
IMAGE = os.environ.get("EGG_NB_IMAGE")
if REAL_MODEL and IMAGE:
    from egg_interp.io import load_image
    real = load_model(REAL_MODEL, device="cuda", prompt_suffix="Answer the question using a single word or phrase.")
    img = load_image(IMAGE)
    res = ground(real, img, "What is written on the sign?")
    plot_grounding(img, res)
else:
    print("set EGG_NB_REAL_MODEL and EGG_NB_IMAGE to run this cell on a real checkpoint")""",
    ),
]


def build(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def execute(nb: nbformat.NotebookNode, cwd: Path, timeout: int = 1200) -> None:
    """Run ``nb`` in a fresh kernel. transformers imports ``tqdm.auto``, which warns (with the
    path of the virtual environment) when ipywidgets is absent, as in this headless kernel:
    that one warning is silenced by a startup file of the kernel's own IPython directory, so
    the committed outputs hold no local path.
    """
    import tempfile

    from nbclient import NotebookClient

    ipython_dir = Path(tempfile.mkdtemp(prefix="egg-nb-ipython-"))
    startup = ipython_dir / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-quiet.py").write_text(
        "import warnings\nwarnings.filterwarnings('ignore', message='IProgress not found')\n"
    )
    os.environ["IPYTHONDIR"] = str(ipython_dir)
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()


NOTEBOOKS = {"ablate_stopping_rules.ipynb": ABLATION, "quickstart.ipynb": QUICKSTART}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=str(ROOT / "notebooks"))
    parser.add_argument("--execute", action="store_true", help="run them and keep the outputs")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    for name, cells in NOTEBOOKS.items():
        nb = build(cells)
        if args.execute:
            execute(nb, out)
        nbformat.write(nb, out / name)
        print("wrote", out / name)


if __name__ == "__main__":
    main()
