"""Randomisation sanity checks for VLM maps (Adebayo et al., 2018): does a map follow the weights?

A map that explains the model must change when the model's weights are destroyed. The model's
blocks (:func:`egg_interp.randomisation.model_blocks`: the vision tower's layers, the
projector, the language model's layers, each part's embeddings and head) are re-initialised
with their own initialiser (transformers' ``_init_weights`` of the pretrained model that holds
them; ``reset_parameters`` for plain torch modules), seeded, in three orders:

* ``cascading``: from the top of the language model down, then the projector, then the vision
  tower, each stage keeping the earlier ones (the classic figure);
* ``bottom_up``: the same cascade from the vision tower's embeddings up;
* ``independent``: one block at a time, the rest trained.

After each stage every method's map is compared with the trained model's
(:mod:`egg_interp.metrics.similarity`: Spearman with and without absolute values, SSIM, top-k
intersection). Controls: ``noise`` (fresh noise at every call: it changes under
randomisation, so a naive check passes it, and the pass rule fails it because it is not
reproducible) and a random-answer test (the VLM analogue of Random Logit: the map of another
answer token should differ). The weights are restored after each order (and between
independent blocks), and the adapter's caches follow the weights, so nothing leaks into later
calls. :func:`run_sanity` runs it all and returns ``sanity.json``'s content.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from egg_interp.data.sample import Sample
from egg_interp.errors import InputError
from egg_interp.methods import get_method
from egg_interp.methods.base import AttributionMethod
from egg_interp.methods.targets import AnswerLogProb, LogProb, Target, greedy_answer
from egg_interp.metrics.similarity import SanitySettings, map_similarities, passes, summarise
from egg_interp.models.base import VLMAdapter
from egg_interp.randomisation import model_blocks, stages

NOISE = "noise"
"""The noise-map control's name in the results."""
ANSWER_TARGETS = ("answer_logprob", "answer_logprob_first", "logprob")
"""Targets that name an answer token: the random-answer test applies to them."""


# ------------------------------------------------------------------------------ maps
@dataclass
class _Mapper:
    """Computes every method's map (first image's primary grid) for every sample."""

    adapter: VLMAdapter
    samples: Sequence[Sample]
    methods: dict[str, AttributionMethod | None]  # None: the noise control
    seed: int = 0
    calls: int = 0
    shapes: dict[int, tuple[int, int]] = field(default_factory=dict)

    def all(self) -> dict[str, list[np.ndarray]]:
        return {
            name: [self.one(name, i) for i in range(len(self.samples))] for name in self.methods
        }

    def one(self, name: str, i: int, target: Target | None = None) -> np.ndarray:
        sample, method = self.samples[i], self.methods[name]
        if method is None:
            self.calls += 1
            rng = np.random.default_rng([self.seed, self.calls])
            return rng.random(self.shapes[i]).astype(np.float32)
        grid = method.attribute(self.adapter, [sample.image], sample.question, target=target).grid
        self.shapes.setdefault(i, grid.shape)
        return np.array(grid, dtype=np.float32)


def random_answer_target(
    adapter: VLMAdapter, sample: Sample, method: AttributionMethod, seed: int
) -> Target | None:
    """The target of ``method`` moved to a random other answer token, or ``None`` when its
    target names no answer (the entropy, attention maps)."""
    if not method.uses_target or method.target.describe() not in ANSWER_TARGETS:
        return None
    inputs = adapter.build_inputs([sample.image], sample.question)
    original = greedy_answer(adapter, inputs, 1)[0]
    vocab = int(adapter.next_token_logits(inputs).shape[-1])
    special = set(getattr(adapter.tokenizer, "all_special_ids", ()) or ())
    choices = [t for t in range(vocab) if t != original and t not in special]
    token = int(np.random.default_rng([seed, original]).choice(choices))
    if isinstance(method.target, LogProb):
        return LogProb(token_id=token)
    return AnswerLogProb(answer_ids=(token,), first_token=True)


# ------------------------------------------------------------------------------ the run
def run_sanity(
    adapter: VLMAdapter,
    samples: Sequence[Sample],
    methods: Sequence[str | AttributionMethod],
    settings: SanitySettings | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Randomisation checks of ``methods`` on ``samples``.

    Parameters
    ----------
    methods : sequence of str or AttributionMethod
        Registered method names (each with its default target and options) or configured
        methods (named by their :attr:`~AttributionMethod.name`).
    progress : callable, optional
        Called with a short line per stage.

    Returns
    -------
    result : dict
        ``sanity.json``'s content: ``{"methods": {name: {"target", "rerun", order: [{"block",
        "spearman", "spearman_abs", "ssim", "topk"}, ...], "random_answer", "passes"}},
        "config": {...}}``; every similarity as ``{"mean", "n", "ci95"}`` over samples.
    figure : dict
        For :mod:`egg_interp.figures.sanity`: the first sample's ``image`` and, per order,
        its ``stages`` and each method's grids (trained first).
    """
    settings = settings or SanitySettings()
    if not samples:
        raise InputError("the sanity check needs at least one sample")
    chosen: dict[str, AttributionMethod | None] = {}
    for m in methods:
        method = get_method(m)
        chosen[method.name] = method
    if settings.noise_control:
        chosen[NOISE] = None
    mapper = _Mapper(adapter, samples, chosen, settings.seed)
    say = progress or (lambda line: None)
    blocks = model_blocks(adapter, settings.granularity)
    trained = mapper.all()
    rerun = _compare(trained, mapper.all(), settings)
    figure: dict[str, Any] = {"image": samples[0].image, "question": samples[0].question}
    per_order: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for order in settings.orders:
        rows, grids, names = {m: [] for m in chosen}, {m: [trained[m][0]] for m in chosen}, []
        for name in stages(adapter.model, blocks, order, settings.seed):
            say(f"{order}: {name}")
            maps = mapper.all()
            for method, sims in _compare(trained, maps, settings).items():
                rows[method].append({"block": name, **sims})
                grids[method].append(maps[method][0])
            names.append(name)
        per_order[order] = rows
        figure[order] = {"stages": names, "maps": grids}
    answers = _random_answers(mapper, trained, settings) if settings.random_answer else {}
    result = _assemble(chosen, rerun, per_order, answers, settings)
    result["config"] = {
        **settings.to_dict(),
        "methods": [m for m in chosen if m != NOISE],
        "blocks": [b.name for b in blocks],
        "samples": [s.id for s in samples],
    }
    return result, figure


def _compare(
    trained: dict[str, list[np.ndarray]],
    maps: dict[str, list[np.ndarray]],
    settings: SanitySettings,
) -> dict[str, dict[str, Any]]:
    """Per method, each similarity to the trained maps over samples (:func:`summarise`)."""
    return {
        m: summarise(
            [map_similarities(a, b, settings.top_fraction) for a, b in zip(trained[m], maps[m])]
        )
        for m in trained
    }


def _random_answers(
    mapper: _Mapper, trained: dict[str, list[np.ndarray]], settings: SanitySettings
) -> dict[str, dict[str, Any] | None]:
    out: dict[str, dict[str, Any] | None] = {}
    for name, method in mapper.methods.items():
        if method is None:
            out[name] = None
            continue
        sims = []
        for i, sample in enumerate(mapper.samples):
            target = random_answer_target(mapper.adapter, sample, method, settings.seed)
            if target is None:
                break
            other = mapper.one(name, i, target)
            sims.append(map_similarities(trained[name][i], other, settings.top_fraction))
        out[name] = summarise(sims) if sims else None
    return out


def _assemble(
    methods: dict[str, AttributionMethod | None],
    rerun: dict[str, dict[str, Any]],
    per_order: dict[str, dict[str, list[dict[str, Any]]]],
    answers: dict[str, dict[str, Any] | None],
    settings: SanitySettings,
) -> dict[str, Any]:
    out: dict[str, Any] = {"methods": {}}
    for name, method in methods.items():
        entry: dict[str, Any] = {
            "target": "none"
            if method is None or not method.uses_target
            else method.target.describe(),
            "control": method is None,
            "rerun": rerun[name],
        }
        for order, rows in per_order.items():
            entry[order] = rows[name]
        full = next(
            (per_order[o][name][-1] for o in ("cascading", "bottom_up") if o in per_order), None
        )
        entry["full_randomisation"] = full
        entry["random_answer"] = answers.get(name)
        entry["passes"] = bool(full is not None and passes(rerun[name], full, settings))
        out["methods"][name] = entry
    return out


# ------------------------------------------------------------------------------ report
def sanity_markdown(result: dict[str, Any]) -> str:
    """``sanity.md``: per method, the similarity at full randomisation, the random-answer
    test, reproducibility and the verdict, then the rule and what the figures show."""
    cfg = result["config"]
    lines = [
        "# Randomisation sanity checks",
        "",
        f"Model `{cfg.get('model', '')}`, dataset `{cfg.get('dataset', '')}`, "
        f"{len(cfg['samples'])} samples; orders {', '.join(cfg['orders'])}; "
        f"{len(cfg['blocks'])} blocks ({cfg['granularity']}); seed {cfg['seed']}.",
        "",
        "Similarity of each map to the trained model's map (mean over samples, 95 % interval). "
        "Lower after randomisation = the map follows the weights.",
        "",
        "| method | target | rerun Spearman | full randomisation: Spearman | Spearman abs | SSIM "
        "| top-k | random answer: Spearman | passes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in result["methods"].items():
        full = entry["full_randomisation"] or {}
        answer = entry["random_answer"]
        cells = [
            f"{name}{' (control)' if entry['control'] else ''}",
            entry["target"],
            _fmt(entry["rerun"].get("spearman")),
            *(_fmt(full.get(k)) for k in ("spearman", "spearman_abs", "ssim", "topk")),
            _fmt(answer["spearman"]) if answer else "n/a",
            "yes" if entry["passes"] else "no",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Pass rule (this toolkit's; the paper sets none): rerun Spearman >= "
        f"{cfg['reproducible_min']} and the upper 95 % bound of the Spearman at full "
        f"randomisation <= {cfg['changed_max']}. The noise control changes under any "
        "randomisation and must fail by not being reproducible; never rank methods by this "
        "check alone (Binder et al., 2023). The random-answer test applies to targets that "
        "name an answer token (n/a: the entropy and attention maps name none).",
    ]
    return "\n".join(lines) + "\n"


def _fmt(stat: dict[str, Any] | None) -> str:
    if not stat or not math.isfinite(stat.get("mean", math.nan)):
        return "-"
    lo, hi = stat["ci95"]
    return f"{stat['mean']:.2f} [{lo:.2f}, {hi:.2f}]"


__all__ = ["NOISE", "random_answer_target", "run_sanity", "sanity_markdown"]
