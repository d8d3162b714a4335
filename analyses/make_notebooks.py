"""Write (and optionally execute) the project's notebooks from the cell sources below.

The notebooks are generated so that their code stays reviewable here; the committed
``.ipynb`` files carry the outputs of a full run:

    python analyses/make_notebooks.py --execute            # full run (EGG_NB_N samples)
    python analyses/make_notebooks.py --execute --only ablate_stopping_rules   # one of them
    EGG_NB_N=3 python analyses/make_notebooks.py --execute --out /tmp/nb   # quick check
"""

from __future__ import annotations

import argparse
import os
import time
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

Each rule is one evaluation by the library's runner (`egg_interp.runner.evaluate`, what
`egg-interp evaluate` and `analyses/eval_scenes.py` run): the `egg` answer pipeline with
that rule's `LoopSettings` (every rule capped at `MAX_STEPS` steps), its lines appended to
one results file; the tables come from the library's summaries of those lines
(`egg_interp.summaries`: one row per sample, figures with 95 % intervals from
`egg_interp.metrics.intervals`). A rule's cost is the wall-clock time the runner recorded
per sample: its loop steps and its answer, at the runner's batch size `BATCH`.""",
    ),
    (
        "code",
        """import os, tempfile
from pathlib import Path
import numpy as np, pandas as pd, matplotlib.pyplot as plt, seaborn as sns
import transformers
transformers.utils.logging.disable_progress_bar()

MODEL = os.environ.get("EGG_NB_MODEL", "organism")
DATASET = os.environ.get("EGG_NB_DATASET", "scenes")
DATA_ROOT = os.environ.get("EGG_NB_DATA_ROOT")
N = int(os.environ.get("EGG_NB_N", "200"))          # samples (a balanced prefix for the scenes)
BATCH = int(os.environ.get("EGG_NB_BATCH", "16"))   # samples per batch of the runner
MAX_STEPS = 6                                       # every rule's step limit
RULES = {"spatial entropy": "ent", "fixed 1": "fixed:1", "fixed 2": "fixed:2",
         "fixed 3": "fixed:3", "fixed 4": "fixed:4", "min crop area": "area:4000",
         "top-1 prob": "prob", "no refinement": "none"}
COLOURS = dict(zip(RULES, sns.color_palette("tab10", len(RULES))))
sns.set_theme(style="whitegrid", context="notebook")""",
    ),
    (
        "code",
        """from egg_interp.models import load_model
from egg_interp.data.registry import load_dataset

adapter = load_model(MODEL)
samples = load_dataset(DATASET, DATA_ROOT, split="test", limit=N)
print(f"{len(samples)} samples of {DATASET}; model {MODEL}")""",
    ),
    (
        "code",
        """from egg_interp.pipelines import PipelineOptions
from egg_interp.results import read_results
from egg_interp.runner import evaluate
from egg_interp.settings import LoopSettings
from egg_interp.summaries import current_records, sample_rows

results = Path(tempfile.mkdtemp(prefix="egg-stopping-rules-")) / "results.jsonl"
settings, lines, rows = {}, {}, {}
for label, spec in RULES.items():
    settings[label] = LoopSettings(stop=spec, max_steps=MAX_STEPS)
    run = evaluate(adapter, samples, methods=(), pipelines=("egg",), out=results,
                   dataset=DATASET, model=MODEL, data_root=DATA_ROOT,
                   pipeline_options=PipelineOptions(settings[label], max_new_tokens=5),
                   batch_size=BATCH, progress=False)
    own = current_records(read_results(results), run.config_hashes)   # this rule's lines
    lines[label] = {r["sample_id"]: r for r in own}
    rows[label] = sample_rows(own, samples)
    print(f"{label:<16} {spec:<10} {run.written} lines, {run.errors} errors, {run.seconds:5.1f} s")""",
    ),
    (
        "md",
        """## Accuracy, crop pointing game, steps and time per rule

`egg_interp.summaries.pipeline_figures` per rule: accuracy (Wilson 95 % interval), pointing
game of the kept top crop (its centre within 15 px of the evidence; samples without a crop
are left out), mean loop steps (bootstrap 95 % interval) and seconds per sample (the mean
of the runner's per-sample timings: with batching, each sample's share of its batch, so no
interval is given); then accuracy per question family (`figure_by`, Wilson intervals).""",
    ),
    (
        "code",
        """from egg_interp.summaries import figure_by, pipeline_figures

def ci(fig, digits=3):
    lo, hi = fig["ci95"]
    return f"{fig['mean']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]" if fig["n"] else "-"

figures = {label: pipeline_figures(rows[label], "egg") for label in RULES}
summary = pd.DataFrame({label: {k: f["mean"] for k, f in figs.items()} for label, figs in figures.items()}).T
by_family = {label: figure_by(rows[label], lambda r: r["correct"]["egg"], lambda r: r["family"] or "all")
             for label in RULES}
display(pd.DataFrame({label: {"n": f["accuracy"]["n"], "accuracy": ci(f["accuracy"]),
                              "crop pointing game": ci(f["crop_pointing_game"]),
                              "mean steps": ci(f["steps"], 2), "seconds / sample": round(f["seconds"]["mean"], 3)}
                      for label, f in figures.items()}).T)
display(pd.DataFrame({label: {fam: ci(fig, 2) for fam, fig in fams.items()}
                      for label, fams in by_family.items()}).T)""",
    ),
    (
        "code",
        """fig, ax = plt.subplots(1, 2, figsize=(13, 4.4))
for label, f in figures.items():
    acc, sec = f["accuracy"], f["seconds"]["mean"]
    ax[0].errorbar(sec, acc["mean"], yerr=[[acc["mean"] - acc["ci95"][0]], [acc["ci95"][1] - acc["mean"]]],
                   color=COLOURS[label], fmt="o", ms=8, capsize=3)
    ax[0].annotate(label, (sec, acc["mean"]), xytext=(5, 4), textcoords="offset points", fontsize=8)
ax[0].set(title="accuracy against cost (Wilson 95% intervals)", xlabel=f"seconds per sample (batch {BATCH})",
          ylabel="answer accuracy")
families = list(next(iter(by_family.values())))
x, width = np.arange(len(families)), 0.8 / len(RULES)
for i, (label, fams) in enumerate(by_family.items()):
    means = np.array([fams[f]["mean"] for f in families])
    lo = np.array([fams[f]["ci95"][0] for f in families]); hi = np.array([fams[f]["ci95"][1] for f in families])
    ax[1].bar(x + (i - (len(RULES) - 1) / 2) * width, means, width, yerr=[means - lo, hi - means],
              capsize=1.5, color=COLOURS[label], label=label, error_kw=dict(lw=0.8))
ax[1].set_xticks(x, families)
ax[1].set(title="accuracy by question family (Wilson 95% intervals)", ylabel="accuracy", ylim=(0, 1.05))
ax[1].legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.1))
fig.tight_layout()""",
    ),
    (
        "md",
        """## Spatial-entropy traces

The value the default rule watches, per step, for a handful of samples, read from the step
logs the runner recorded (`egg_interp.summaries.step_values`). Every rule follows the same
trajectory until it stops, so each sample's longest recorded log is drawn; colour = whether the
`ent` rule's answer was right, star = the step whose crops it kept.""",
    ),
    (
        "code",
        """from egg_interp.summaries import step_values

fig, ax = plt.subplots(figsize=(6.5, 3.8))
for s in samples[:12]:
    ent_line = lines["spatial entropy"].get(s.id)
    logs = [lines[label][s.id] for label in RULES if s.id in lines[label]]
    if ent_line is None or not logs:
        continue
    ys = np.array(step_values(max(logs, key=lambda r: len(r["steps"]))))
    ys[~np.isfinite(ys)] = np.nan
    colour = "tab:green" if ent_line["score"] else "tab:red"
    ax.plot(range(len(ys)), ys, marker="o", color=colour, alpha=0.6)
    keep = ent_line["info"]["decision"]["keep"]
    if keep is not None and keep < len(ys):
        ax.plot(keep, ys[keep], marker="*", ms=14, color=colour, mec="black")
ax.set(xlabel="step", ylabel="spatial entropy of the original's map",
       title="green = right, red = wrong (spatial-entropy rule); star = kept step")
fig.tight_layout()""",
    ),
    (
        "md",
        """## One sample's crop sequence

The runner keeps no maps of the loop's steps, so the first detail question's loop is run again
with the spatial-entropy rule's settings to draw them (the loop is deterministic); the answers
are the ones the runner recorded.""",
    ),
    (
        "code",
        """from egg_interp.figures.grounding import plot_grounding
from egg_interp.loop import zoom_and_reground
s = next((x for x in samples if x.family == "detail" and x.id in lines["spatial entropy"]), samples[0])
line = lines["spatial entropy"][s.id]
res = zoom_and_reground(adapter, s.image, s.question, settings=settings["spatial entropy"])
res.base_answer, res.answer = lines["no refinement"][s.id]["answer"], line["answer"]
fig = plot_grounding(s.image, res, gt_boxes=s.boxes)
print("truth:", s.answers, "| no refinement:", res.base_answer, "| spatial entropy:", res.answer,
      "|", line["info"]["decision"]["reason"])""",
    ),
    ("md", "## Conclusion (computed from the table above)"),
    (
        "code",
        """acc = summary["accuracy"]
best = acc.idxmax()
ent, none = summary.loc["spatial entropy"], summary.loc["no refinement"]
cheapest_close = summary[acc >= acc.max() - 0.02]["seconds"].idxmin()
overlap = [l for l in RULES if l != best and figures[l]["accuracy"]["ci95"][1] >= figures[best]["accuracy"]["ci95"][0]]
gain = {f: by_family["spatial entropy"][f]["mean"] - by_family["no refinement"][f]["mean"] for f in by_family["spatial entropy"]}
fam = max(gain, key=gain.get)
print(f"On {len(samples)} samples, the most accurate rule is '{best}' ({acc[best]:.3f}, 95% interval "
      f"{figures[best]['accuracy']['ci95'][0]:.3f}-{figures[best]['accuracy']['ci95'][1]:.3f}); the intervals of "
      f"{', '.join(repr(l) for l in overlap) or 'no other rule'} overlap it. Spatial entropy reaches {ent.accuracy:.3f} "
      f"in {ent.steps:.2f} steps on average ({ent.seconds / max(none.seconds, 1e-9):.1f}x the cost of no refinement, "
      f"which scores {none.accuracy:.3f}); its largest gain over no refinement is on {fam} questions "
      f"({by_family['spatial entropy'][fam]['mean']:.2f} vs {by_family['no refinement'][fam]['mean']:.2f}). "
      f"The cheapest rule within 2 points of the best is '{cheapest_close}'.")""",
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
    parser.add_argument(
        "--only",
        action="append",
        choices=[Path(n).stem for n in NOTEBOOKS],
        help="write (and execute) only this notebook; may be repeated (default: all)",
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    for name, cells in NOTEBOOKS.items():
        if args.only and Path(name).stem not in args.only:
            continue
        nb = build(cells)
        start = time.perf_counter()
        if args.execute:
            execute(nb, out)
        nbformat.write(nb, out / name)
        took = f" (executed in {time.perf_counter() - start:.0f} s)" if args.execute else ""
        print(f"wrote {out / name}{took}")


if __name__ == "__main__":
    main()
