"""Train the model organism: a small LLaVA-architecture VLM on the synthetic scenes.

Usage::

    python analyses/train_organism.py                       # full run, resumes runs/organism/
    python analyses/train_organism.py --tiny --steps 30 --run-dir /tmp/x --no-export
    python analyses/train_organism.py --export-only         # last checkpoint -> package

What it does (see issue 3 for why each piece is there):

* Data: scenes from the *train* seed range only, generated on the fly, deterministic by
  step (so a resumed run sees the same batches). Each sequence holds the full view alone
  (40%) or the full view plus one or two square crops (around objects or elsewhere), all
  images first as in LLaVA-1.5's prompt, then up to four question/answer turns about
  different objects. No question's text gives away another's answer.
* Loss: cross-entropy on the answer word and its ``</s>`` only, plus an auxiliary
  per-token loss on the post-projector visual tokens (colour, shape and pattern of the
  object under each token) from a linear head kept outside the saved checkpoint.
* Text input embeddings start at std 1.0 so the visual tokens do not drown the question.
* Curriculum gated on measured accuracy: scenes hold 1 object until details are read from
  crops and colours bound, then up to 2, 3, 4 objects.
* Logs every ``--log-every`` steps to ``RUN/log.jsonl``; validation figures to
  ``RUN/val.jsonl``; checkpoint ``RUN/ckpt.pt`` (model, head, optimiser, step, stage).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from collections import defaultdict, deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from egg_interp.data import scenes  # noqa: E402
from egg_interp.models.offline import (  # noqa: E402
    build_llava_processor,
    build_word_tokenizer,
    llava_config,
)
from egg_interp.organism import ORGANISM_DIR  # noqa: E402
from egg_interp.organism.vocab import WORDS  # noqa: E402

IGNORE = -100
COLOURS = list(scenes.COLOURS)


@dataclass
class Config:
    """The recipe of the shipped organism (its run changed some of these on the way, by
    resuming with ``--set``; see the README notes: shape weight 1 -> 2 -> 3 at steps 600 and
    1300, grounding loss 0 -> 0.5 -> 1.5 at steps 2500 and 2800, stripe period 5 -> 5.5 px at
    step 1700, 150 more stage-A steps at step 1300; at step 4200 the run was extended to 7600
    steps with ``lr=5e-4 decay_frac=0.35 min_objects=2``, and from step 4500 yes/no questions
    come first in a sequence, so no earlier answer gives them away)."""

    image_size: int = 64
    patch_size: int = 8
    vision_hidden: int = 128
    vision_layers: int = 4
    vision_heads: int = 4
    text_hidden: int = 192
    text_layers: int = 3
    text_heads: int = 4
    batch: int = 16
    lr: float = 1e-3
    warmup: int = 100
    steps: int = 4200
    decay_frac: float = 0.15
    aux_weight: float = 0.5
    ground_weight: float = 1.5
    shape_weight: float = 3.0
    max_turns: int = 4
    min_objects: int = 1  # fewest objects per scene once past stage 1
    seed: int = 0
    embed_std: float = 1.0
    # curriculum: stage s -> up to s objects; advance when the gates hold
    gate_crop_detail: float = 0.8
    gate_coarse: float = 0.75
    stage_min_steps: int = 150
    stage_max_steps: int = 500
    # stage A: vision tower + projector + auxiliary head alone, until the gate holds
    vision_steps: int = 600
    vision_lr: float = 1e-3
    gate_vision_pattern: float = 0.85
    # organism v2 (scenes-v2): fine-tune a v1 checkpoint; see V2 below
    version: str = "scenes-v1"
    max_objects: int = 4  # the curriculum stops at this many objects
    detail_other_weight: float = 0.7  # weight of detail questions about uncropped objects
    freeze_vision: bool = False
    lowercase: bool = False  # tokenizer folds case
    # legible-detail phase: stripes at this contrast (0: the version's own) until step
    # ``legible_until``, then in a share ``legible_share`` of the scenes
    legible_contrast: int = 0
    legible_until: int = 0
    legible_share: float = 0.0
    families: str = ""  # comma-separated question families to train on ("": all)
    contrast: int = 0  # stripe contrast of the training scenes (0: the version's own)
    object_size: tuple[int, int] = (56, 80)  # object sides of the training scenes, pixels
    full_only: float = 0.4  # share of sequences with the full view alone (no crops)


V2 = dict(
    version="scenes-v2",
    contrast=20,
    text_layers=4,
    max_objects=3,
    min_objects=1,
    detail_other_weight=1.5,
    freeze_vision=True,
    lowercase=True,
    vision_steps=0,
    aux_weight=0.0,
    ground_weight=0.0,
    lr=5e-4,
    warmup=50,
    steps=5200,
    decay_frac=0.25,
    stage_min_steps=200,
    stage_max_steps=400,
)
"""Organism v2 (issue 12): starts from the v1 checkpoint (``--init-from``), adds a fourth
language-model layer as an identity (zero output projections), freezes the vision tower and
projector (their probes read colour, shape and pattern already), and trains on answers alone
(no grounding or auxiliary loss) on scenes-v2: objects named by a colour unique in the scene,
1 -> 3 objects, and crops that often show an object other than the one asked about. The
settings change by phase, see :data:`V2_PHASES`."""

V2_PHASES: list[tuple[int, dict]] = [
    (950, dict(legible_contrast=48, legible_until=10**9, lr=7e-4, detail_other_weight=2.0)),
    (1200, dict(families="detail,coarse", max_turns=2, min_objects=2, lr=1e-3)),
    (1700, dict(full_only=1.0)),
    (3300, dict(full_only=0.4, families="", max_turns=3, min_objects=1, legible_until=0)),
    (3300, dict(legible_share=0.3)),
]
"""Settings from a step on, as the shipped v2 run applied them (by resuming with ``--set``).

Why each phase: at scenes-v2's contrast from the start, 950 steps learned no binding (the
target moved the answer less than the largest distractor, ratio 0.84), so binding was
trained on fully legible stripes (v1's contrast 48); with every family and crops in the mix
it still did not come in 500 steps, so the run narrowed to detail and coarse questions on
2-3 objects (step 1200) and then to the full view alone (step 1700), where the target
became causal from about step 2500 (ratio 4.7 at step 3300, measured at scenes-v2's
contrast). The last phase brings back crops (often of another object), every family and
scenes-v2's contrast in 70 % of the scenes."""


def apply_phases(cfg: Config, step: int, phases: list[tuple[int, dict]]) -> list[str]:
    """Set the fields of every phase that starts at or before ``step``; names what changed."""
    changed = []
    for start, fields in phases:
        if start <= step:
            for key, value in fields.items():
                if getattr(cfg, key) != value:
                    setattr(cfg, key, value)
                    changed.append(f"{key}={value}")
    return changed


TINY = dict(
    vision_steps=5,
    vision_hidden=32,
    vision_layers=2,
    vision_heads=2,
    text_hidden=32,
    text_layers=1,
    text_heads=2,
    batch=8,
    warmup=2,
    lr=3e-3,
)


# ------------------------------------------------------------------------ data


def square_crop(box, scale: float, canvas: tuple[int, int], rng: np.random.Generator | None):
    """A square crop box around ``box`` grown by ``scale``, shifted to fit inside the canvas."""
    w, h = canvas
    x0, y0, x1, y1 = box
    side = min(int(round(max(x1 - x0, y1 - y0) * scale)), w, h)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if rng is not None:  # jitter the centre a little
        cx += rng.uniform(-0.1, 0.1) * side
        cy += rng.uniform(-0.1, 0.1) * side
    left = int(round(min(max(cx - side / 2, 0), w - side)))
    top = int(round(min(max(cy - side / 2, 0), h - side)))
    return (left, top, left + side, top + side)


def token_labels(scene: scenes.Scene, crop, grid: int) -> np.ndarray:
    """(grid*grid, 4) labels colour/shape/pattern of a square view ``crop`` (IGNORE where
    mixed), and in the last column the index of the object covering >= 20% of the token."""
    x0, y0, x1, y1 = crop
    out = np.full((grid * grid, 4), IGNORE, np.int64)
    edges_x = np.linspace(x0, x1, grid + 1).round().astype(int)
    edges_y = np.linspace(y0, y1, grid + 1).round().astype(int)
    for r in range(grid):
        for c in range(grid):
            cell = scene.labels[edges_y[r] : edges_y[r + 1], edges_x[c] : edges_x[c + 1]]
            if cell.size == 0:
                continue
            ids, counts = np.unique(cell, return_counts=True)
            k = counts.argmax()
            frac = counts[k] / cell.size
            i = int(ids[k])
            row = out[r * grid + c]
            obj = ids >= 0
            if not obj.any():
                if frac >= 0.9:
                    row[0], row[1] = len(COLOURS), len(scenes.SHAPES)
                continue
            j = int(np.argmax(np.where(obj, counts, -1)))
            ofrac = counts[j] / cell.size
            o = scene.objects[int(ids[j])]
            if ofrac >= 0.2:  # edge cells show the outline: label them too
                row[3] = int(ids[j])
                row[0] = COLOURS.index(o.colour)
                row[1] = scenes.SHAPES.index(o.shape)
            elif i < 0 and frac >= 0.9:
                row[0], row[1] = len(COLOURS), len(scenes.SHAPES)
            if ofrac >= 0.6:
                row[2] = scenes.PATTERNS.index(o.pattern)
    return out


def leaks(q: scenes.Question, others: list[scenes.Question]) -> bool:
    """Whether another question's text gives away ``q``'s answer (or repeats it)."""
    for o in others:
        words = set(o.text.rstrip("?").split())
        if o.text == q.text or q.answer in words:
            return True
        fams = {q.family, o.family}
        if fams == {"detail", "multi"} and set(q.evidence) & set(o.evidence):
            return True  # "same pattern? yes" plus one pattern gives the other away
        if q.family == "existence" and q.text.split(" ", 3)[3].rstrip("?") in o.text:
            return True
        if o.family == "existence" and o.answer == "yes":
            pair = o.text.split(" ", 3)[3].rstrip("?")
            if q.family == "existence" and q.answer == "yes" and pair in q.text:
                return True
    return False


def candidate_questions(
    scene: scenes.Scene, rng: np.random.Generator, focus: list[int], other_weight: float = 0.7
):
    """Question pool for a scene: details (esp. of ``focus`` objects), coarse, existence, multi."""
    n = len(scene.objects)
    pool: list[tuple[float, scenes.Question]] = []
    for i in range(n):
        weight = 2.0 if i in focus else other_weight
        pool.append((weight, scenes.detail_question(scene, i)))
        for q in scenes.coarse_questions(scene, i):
            pool.append((1.5, q))
    o = scene.objects[int(rng.integers(n))]
    pool.append((1.0, scenes.existence_question(scene, o.colour, o.shape)))
    pool.append((1.0, scenes.existence_question(scene, *scenes.absent_pair(scene, rng))))
    if n >= 2:
        i, j = (int(v) for v in rng.choice(n, size=2, replace=False))
        if focus and len(focus) == 2:
            i, j = focus
        pool.append((1.5 if len(focus) == 2 else 0.6, scenes.multi_question(scene, i, j)))
    return pool


def pick_questions(pool, rng: np.random.Generator, k: int) -> list[scenes.Question]:
    chosen: list[scenes.Question] = []
    pool = list(pool)
    while pool and len(chosen) < k:
        w = np.array([p[0] for p in pool])
        idx = int(rng.choice(len(pool), p=w / w.sum()))
        q = pool.pop(idx)[1]
        if leaks(q, chosen) or any(leaks(c, [q]) for c in chosen):
            continue
        chosen.append(q)
    # Earlier *answers* are in the context too: yes/no questions go first, so that no earlier
    # answer tells them (a colour answer then "is there a red circle?"), as at test time.
    return sorted(chosen, key=lambda q: q.family not in ("existence", "multi"))


@dataclass
class Example:
    images: list[Image.Image]
    labels: np.ndarray  # (n_images * grid^2, 3)
    turns: list[tuple[scenes.Question, str]]  # (question, view tag for the stats)
    n_objects: int


def make_example(
    seed: int, stage: int, cfg: Config, vision_only: bool = False, step: int = 0
) -> Example:
    rng = np.random.default_rng([cfg.seed, seed])
    if vision_only:
        n = int(rng.integers(1, 5))
    elif stage <= 1:
        n = 1
    else:
        stage = min(stage, cfg.max_objects)
        lo = min(cfg.min_objects, stage)
        n = stage if rng.random() < 0.5 else int(rng.integers(lo, stage + 1))
    seed_scene = int(rng.integers(0, scenes.SPLITS["train"][1]))
    legible = cfg.legible_contrast and (
        step < cfg.legible_until or rng.random() < cfg.legible_share
    )
    contrast = cfg.legible_contrast if legible else (cfg.contrast or None)
    scene = scenes.make_scene(
        seed_scene,
        n_objects=n,
        version=cfg.version,
        contrast=contrast,
        object_size=cfg.object_size,
    )
    canvas = scene.image.size
    grid = cfg.image_size // cfg.patch_size
    r = rng.random()
    n_crops = (
        0
        if r < cfg.full_only
        else (1 if r < cfg.full_only + 0.4 * (1 - cfg.full_only) / 0.6 else 2)
    )
    if vision_only:
        n_crops = 3
    views = [(0, 0, *canvas)]
    focus: list[int] = []
    for _ in range(n_crops):
        if rng.random() < 0.75:
            i = int(rng.integers(n))
            focus.append(i)
            views.append(square_crop(scene.objects[i].box, rng.uniform(1.15, 1.9), canvas, rng))
        else:
            side = int(rng.integers(60, 140))
            x0, y0 = int(rng.integers(0, canvas[0] - side)), int(rng.integers(0, canvas[1] - side))
            views.append((x0, y0, x0 + side, y0 + side))
    images = [scene.image if v == views[0] else scene.image.crop(v) for v in views]
    labels = np.concatenate([token_labels(scene, v, grid) for v in views])
    if vision_only:
        return Example(images, labels, [], n)
    pool = candidate_questions(scene, rng, focus, cfg.detail_other_weight)
    if cfg.families:
        keep = cfg.families.split(",")
        pool = [p for p in pool if p[1].family in keep]
    questions = pick_questions(pool, rng, int(rng.integers(1, cfg.max_turns + 1)))
    turns = []
    for q in questions:
        zoomed = q.evidence and all(e in focus for e in q.evidence)
        turns.append((q, "crop" if zoomed else "full"))
    return Example(images, labels, turns, n)


class Batcher:
    """Turns examples into model inputs (token layout identical to the processor's)."""

    def __init__(self, processor, cfg: Config):
        self.proc = processor
        self.tok = processor.tokenizer
        self.cfg = cfg
        self.n_img_tokens = (cfg.image_size // cfg.patch_size) ** 2
        self.image_id = self.tok.convert_tokens_to_ids("<image>")
        self.eos = self.tok.eos_token_id

    def ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def __call__(self, examples: list[Example]):
        seqs, targets, meta, ground = [], [], [], []
        for ex in examples:
            ids = self.ids("USER :") + [self.image_id] * (self.n_img_tokens * len(ex.images))
            tgt = [IGNORE] * len(ids)
            for t, (q, view) in enumerate(ex.turns):
                prefix = ("" if t == 0 else "USER : ") + q.text + " ASSISTANT :"
                p = self.ids(prefix)
                a = self.ids(q.answer)
                assert len(a) == 1, q.answer
                ids += p
                tgt += [IGNORE] * (len(p) - 1) + a
                meta.append((len(seqs), len(ids) - 1, a[0], q.family, view, ex.n_objects))
                evid = np.isin(ex.labels[:, 3], list(q.evidence)) if q.evidence else None
                ground.append(evid)
                ids += a + [self.eos]
                tgt += [self.eos, IGNORE]
            seqs.append(ids)
            targets.append(tgt)
        length = max(map(len, seqs))
        input_ids = torch.full((len(seqs), length), self.tok.pad_token_id)
        labels = torch.full((len(seqs), length), IGNORE)
        mask = torch.zeros((len(seqs), length), dtype=torch.long)
        for b, (s, t) in enumerate(zip(seqs, targets)):
            input_ids[b, : len(s)] = torch.tensor(s)
            labels[b, : len(t)] = torch.tensor(t)
            mask[b, : len(s)] = 1
        images = [im for ex in examples for im in ex.images]
        pixel_values = self.proc.image_processor(images, return_tensors="pt")["pixel_values"]
        aux = torch.from_numpy(np.concatenate([ex.labels[:, :3] for ex in examples]))
        return {
            "input_ids": input_ids,
            "attention_mask": mask,
            "pixel_values": pixel_values,
            "labels": labels,
            "aux": aux,
            "meta": meta,
            "ground": ground,
            "image_token_id": self.image_id,
        }


# ------------------------------------------------------------------------ model


def init_patch_filters(conv: torch.nn.Conv2d, n_orient: int = 8, periods=(2.2, 3.0, 4.2, 6.0)):
    """Oriented grating filters (quadrature pairs) for the first channels of the patch embedding.

    Stands in for pretraining, like the auxiliary loss: from a random initialisation the
    tower needed hundreds of steps to notice stripe orientation at all; from these filters
    it reads it from crops in ~40 steps. The other channels keep their random initialisation
    (large colour filters there drowned the gratings after the tower's first LayerNorm). The
    filters stay trainable.
    """
    w = conv.weight  # (channels, 3, k, k)
    k = w.shape[-1]
    yy, xx = torch.meshgrid(
        torch.arange(k, dtype=torch.float32), torch.arange(k, dtype=torch.float32), indexing="ij"
    )
    yy, xx = yy - (k - 1) / 2, xx - (k - 1) / 2
    filters = []
    for p in periods:
        for o in range(n_orient):
            theta = math.pi * o / n_orient
            t = (xx * math.cos(theta) + yy * math.sin(theta)) * 2 * math.pi / p
            for phase in (0.0, math.pi / 2):
                f = torch.cos(t + phase)
                f = f - f.mean()
                filters.append((f / f.norm())[None].expand(3, k, k) / math.sqrt(3))
    with torch.no_grad():
        for i, f in enumerate(filters[: w.shape[0]]):
            w[i] = f


def build(cfg: Config):
    from transformers import LlavaForConditionalGeneration

    tokenizer = build_word_tokenizer(WORDS, lowercase=cfg.lowercase)
    processor = build_llava_processor(tokenizer, cfg.image_size, cfg.patch_size)
    mcfg = llava_config(
        tokenizer,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        vision_hidden=cfg.vision_hidden,
        vision_layers=cfg.vision_layers,
        vision_heads=cfg.vision_heads,
        text_hidden=cfg.text_hidden,
        text_layers=cfg.text_layers,
        text_heads=cfg.text_heads,
    )
    torch.manual_seed(cfg.seed)
    model = LlavaForConditionalGeneration(mcfg)
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_(0.0, cfg.embed_std)
    init_patch_filters(model.model.vision_tower.embeddings.patch_embedding)
    n_out = len(COLOURS) + 1 + len(scenes.SHAPES) + 1 + len(scenes.PATTERNS)
    head = torch.nn.Linear(cfg.text_hidden, n_out)
    if cfg.freeze_vision:
        for p in (
            *model.model.vision_tower.parameters(),
            *model.model.multi_modal_projector.parameters(),
        ):
            p.requires_grad_(False)
    return model, head, processor


def init_from(model, directory: Path) -> list[str]:
    """Load a checkpoint's weights into ``model``; layers it lacks start as identities.

    Returns the names of the parameters the checkpoint did not hold. A language-model layer
    that is new gets zero output projections (``o_proj``, ``down_proj``), so the model
    computes exactly what the checkpoint computed until training moves them.
    """
    from transformers import LlavaForConditionalGeneration

    state = LlavaForConditionalGeneration.from_pretrained(directory).state_dict()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise SystemExit(f"{directory}: weights this model has no place for: {unexpected[:5]}")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in missing and name.endswith(("o_proj.weight", "down_proj.weight")):
                p.zero_()
    return list(missing)


def aux_loss_of(head, feats: torch.Tensor, aux: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Mean of the colour / shape / pattern token losses, and their accuracies on objects."""
    z = head(feats.reshape(-1, feats.shape[-1]))
    nc, ns = len(COLOURS) + 1, len(scenes.SHAPES) + 1
    parts, accs = [], {}
    for name, sl, col in (
        ("colour", slice(0, nc), 0),
        ("shape", slice(nc, nc + ns), 1),
        ("pattern", slice(nc + ns, None), 2),
    ):
        m = aux[:, col] != IGNORE
        if m.any():
            parts.append(torch.nn.functional.cross_entropy(z[m][:, sl], aux[m, col]))
            on_obj = m & (aux[:, 0] < len(COLOURS))
            if on_obj.any():
                accs[name] = float((z[on_obj][:, sl].argmax(1) == aux[on_obj, col]).float().mean())
    return sum(parts) / len(parts), accs


def vision_forward(model, head, batch) -> tuple[torch.Tensor, dict]:
    """Stage A (as LLaVA pretrains its encoder): auxiliary token loss only, no language model."""
    feats = model.model.get_image_features(
        pixel_values=batch["pixel_values"],
        vision_feature_layer=model.config.vision_feature_layer,
        vision_feature_select_strategy=model.config.vision_feature_select_strategy,
    )
    feats = feats.pooler_output if hasattr(feats, "pooler_output") else feats
    if isinstance(feats, (list, tuple)):
        feats = torch.cat(list(feats))
    return aux_loss_of(head, feats, batch["aux"])


def grounding_loss(attentions, batch) -> torch.Tensor:
    """-log(share of the answer position's attention to image tokens that lands on the
    evidence objects' tokens), averaged over heads, layers and questions with evidence.

    Optional (``Config.ground_weight``): a grounding signal like the region-grounded data
    real VLMs see; it teaches the model which object a question names.
    """
    image_id = batch["image_token_id"]
    losses = []
    for (row, col, *_), evid in zip(batch["meta"], batch["ground"]):
        if evid is None or not evid.any():
            continue
        is_img = batch["input_ids"][row] == image_id
        img_pos = torch.nonzero(is_img).squeeze(1)
        target = img_pos[torch.from_numpy(evid)]
        for att in attentions:
            a = att[row, :, col]  # (heads, length)
            on_img = a[:, img_pos].sum(-1)
            on_tgt = a[:, target].sum(-1)
            losses.append(-torch.log((on_tgt + 1e-6) / (on_img + 1e-6)).mean())
    if not losses:
        return torch.zeros(())
    return torch.stack(losses).mean()


def forward(model, head, batch, cfg: Config):
    """Answer loss, auxiliary loss, and the logits at the answer positions."""
    captured = {}

    def hook(_module, _inputs, output):
        captured["feats"] = output

    handle = model.model.multi_modal_projector.register_forward_hook(hook)
    want_att = cfg.ground_weight > 0
    try:
        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            pixel_values=batch["pixel_values"],
            output_attentions=want_att,
        )
    finally:
        handle.remove()
    ground_loss = grounding_loss(out.attentions, batch) if want_att else None
    logits = out.logits  # labels are already aligned with the position that predicts them
    labels = batch["labels"]
    ans_loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE
    )
    feats = captured["feats"].reshape(-1, captured["feats"].shape[-1])
    z = head(feats)
    nc, ns = len(COLOURS) + 1, len(scenes.SHAPES) + 1
    aux = batch["aux"]
    parts = [
        torch.nn.functional.cross_entropy(z[:, :nc], aux[:, 0], ignore_index=IGNORE),
        torch.nn.functional.cross_entropy(z[:, nc : nc + ns], aux[:, 1], ignore_index=IGNORE),
    ]
    if (aux[:, 2] != IGNORE).any():
        parts.append(
            torch.nn.functional.cross_entropy(z[:, nc + ns :], aux[:, 2], ignore_index=IGNORE)
        )
    if len(parts) > 1:
        parts[1] = parts[1] * cfg.shape_weight
    aux_loss = sum(parts) / len(parts)
    rows = torch.tensor([m[0] for m in batch["meta"]])
    cols = torch.tensor([m[1] for m in batch["meta"]])
    pred = out.logits[rows, cols].argmax(-1)
    if ground_loss is not None:
        ans_loss = ans_loss + cfg.ground_weight * ground_loss
    return ans_loss, aux_loss, pred


# ------------------------------------------------------------------------ validation


def oracle_views(sample, image: Image.Image) -> list[Image.Image]:
    views = [image]
    for box in sample.boxes:
        views.append(image.crop(square_crop(box, 1.5, image.size, None)))
    return views


@torch.no_grad()
def validate(model, processor, n: int = 48, version: str = scenes.VERSION) -> dict:
    """Accuracy on val samples with the full view and with oracle crops."""
    model.eval()
    samples = scenes.load(split="val", per_family=n, version=version)
    res: dict[str, list[float]] = defaultdict(list)
    for s in samples:
        image = s.image
        for mode in ("full", "oracle"):
            if mode == "oracle" and s.family in ("coarse", "existence"):
                continue
            views = [image] if mode == "full" else oracle_views(s, image)
            pred = answer(model, processor, views, s.question)
            res[f"{s.family}/{mode}"].append(float(pred == s.answers[0]))
    model.train()
    return {k: float(np.mean(v)) for k, v in sorted(res.items())}


def answer(model, processor, images, question: str) -> str:
    """Greedy one-word answer, through the processor's chat template (as users will call it)."""
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": question}]
    text = processor.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True
    )
    inputs = processor(text=text, images=images, return_tensors="pt")
    logits = model(**inputs).logits[0, -1]
    return processor.tokenizer.convert_ids_to_tokens(int(logits.argmax()))


# ------------------------------------------------------------------------ training


def lr_at(step: int, cfg: Config) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    decay_start = int(cfg.steps * (1 - cfg.decay_frac))
    if step < decay_start:
        return cfg.lr
    frac = (step - decay_start) / max(1, cfg.steps - decay_start)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))


def export(model, processor, directory: Path) -> None:
    model.set_attn_implementation("sdpa")
    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)


def plot_curves(run: Path, out: Path) -> None:
    """Training curves (losses, running accuracies, validation figures) to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = (run / "log.jsonl").read_text().splitlines()
    recs = [r for r in map(json.loads, lines) if "loss" in r]
    stages = [r for r in map(json.loads, lines) if "event" in r]
    vals = []
    if (run / "val.jsonl").exists():
        vals = [json.loads(x) for x in (run / "val.jsonl").read_text().splitlines()]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    steps = [r["step"] for r in recs]
    ax = axes[0]
    cfg = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
    curves = [("ans", "answer loss (+ grounding loss once switched on)")]
    if cfg.get("aux_weight", 1.0) > 0:  # v2 trains without it (weight 0)
        curves.append(("aux", "auxiliary token loss"))
    for key, label in curves:
        ax.plot(steps, [r[key] for r in recs], label=label)
    ax.set_yscale("log")
    ax.set_title("training losses")
    ax = axes[1]
    keys = ("detail/full", "detail/crop", "coarse/full", "existence/full", "multi/full")
    for key in keys:
        pts = [(r["step"], r["acc"][key]) for r in recs if key in r["acc"]]
        if pts:
            ax.plot(*zip(*pts), label=key)
    ax.set_title("running training accuracy (last 300 answers)")
    ax = axes[2]
    for key in sorted({k for v in vals for k in v["val"]}):
        pts = [(v["step"], v["val"][key]) for v in vals if key in v["val"]]
        ax.plot(*zip(*pts), marker="o", label=key)
    ax.set_title("validation accuracy (full view / oracle crop, 40 per family)")
    for ax in axes:
        ax.set_xlabel("step")
        for ev in stages:
            ax.axvline(ev["step"], color="grey", lw=0.8, ls=":")
        ax.legend(fontsize=7)
    for ax in axes[1:]:
        ax.set_ylim(0, 1.02)
    fig.suptitle("model organism training (dotted: curriculum stages and phase changes)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------ command line


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (see the module docstring for the usual calls)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "organism")
    ap.add_argument("--steps", type=int, default=None, help="total steps (schedule length)")
    ap.add_argument("--stop-at", type=int, default=None, help="stop (and checkpoint) at this step")
    ap.add_argument("--tiny", action="store_true", help="tiny model for tests")
    ap.add_argument("--batch", type=int, default=None, help="sequences per step")
    ap.add_argument("--set", action="append", default=[], help="override a Config field: key=value")
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--val-every", type=int, default=250)
    ap.add_argument("--val-n", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--export-dir", type=Path, default=ORGANISM_DIR)
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--plot", type=Path, default=None, help="write the curves figure and exit")
    ap.add_argument(
        "--vision-again", type=int, default=0, help="run this many more stage-A steps first"
    )
    ap.add_argument("--stage", type=int, default=None, help="force the curriculum stage")
    ap.add_argument(
        "--recipe",
        choices=("v1", "v2"),
        default="v2",
        help="v2 (default, the shipped organism) fine-tunes a v1 checkpoint given by --init-from",
    )
    ap.add_argument(
        "--init-from",
        type=Path,
        default=ROOT / "runs" / "organism-v1" / "export",
        help="v2: exported v1 checkpoint to start from (train v1 with --recipe v1 first)",
    )
    return ap.parse_args(argv)


def load_config(args: argparse.Namespace) -> tuple[Config, dict | None]:
    """The run's recipe and its checkpoint (``None`` when the run starts afresh).

    A resumed run keeps its checkpoint's config; a new one takes the v1 or v2 recipe (shrunk
    by ``TINY`` with ``--tiny``). ``--steps``, ``--batch`` and ``--set`` override either.
    """
    ckpt_path = args.run_dir / "ckpt.pt"
    state = None
    cfg = Config()
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False)
        cfg = Config(**state["config"])
    elif args.tiny:
        cfg = Config(**{**(V2 if args.recipe == "v2" else {}), **TINY})
    elif args.recipe == "v2":
        cfg = Config(**V2)
    if args.steps is not None:
        cfg.steps = args.steps
    if args.batch is not None:
        cfg.batch = args.batch
    for item in args.set:
        key, value = item.split("=", 1)
        setattr(cfg, key, type(getattr(cfg, key))(value))
    return cfg, state


# ------------------------------------------------------------------------ run state


@dataclass
class Progress:
    """Where a run stands besides its weights: answer step, curriculum stage and the step it
    began at, stage-A (vision) step and whether stage A is done; all saved in the checkpoint."""

    step: int = 0
    stage: int = 1
    stage_start: int = 0
    vstep: int = 0
    vdone: bool = False


@dataclass
class Trainer:
    """What the training stages share: the run's config (phases change it in place), model,
    auxiliary head, processor, answer-stage optimiser over ``params``, and progress."""

    run: Path
    cfg: Config
    model: object
    head: torch.nn.Module
    processor: object
    params: list
    opt: torch.optim.Optimizer
    progress: Progress

    def save(self, **extra) -> None:
        """Checkpoint to ``RUN/ckpt.pt`` (through a temporary file); ``extra``: optimisers."""
        p = self.progress
        state = {
            "config": asdict(self.cfg),
            "model": self.model.state_dict(),
            "head": self.head.state_dict(),
            "step": p.step,
            "stage": p.stage,
            "stage_start": p.stage_start,
            "vstep": p.vstep,
            "vdone": p.vdone,
            **extra,
        }
        torch.save(state, self.run / "ckpt.tmp")
        (self.run / "ckpt.tmp").replace(self.run / "ckpt.pt")


def start_run(cfg: Config, args: argparse.Namespace, state: dict | None) -> Trainer:
    """Build the model, head and optimiser, then restore them from the checkpoint ``state``;
    a new v2 run starts from ``--init-from`` (not with ``--tiny``) past stage A, at stage 2."""
    model, head, processor = build(cfg)
    params = [p for p in (*model.parameters(), *head.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.98))
    progress = Progress()
    if cfg.version != "scenes-v1" and state is None:
        if not args.tiny:
            if not (args.init_from / "model.safetensors").is_file():
                raise SystemExit(
                    f"--init-from {args.init_from}: no checkpoint there; train the v1 recipe "
                    "first (--recipe v1 --run-dir runs/organism-v1, then --export-only "
                    "--export-dir runs/organism-v1/export)"
                )
            new = init_from(model, args.init_from)
            print(f"initialised from {args.init_from}; new parameters: {len(new)}", flush=True)
        progress.stage, progress.vdone = 2, True
    if state is not None:
        model.load_state_dict(state["model"])
        head.load_state_dict(state["head"])
        progress.step, progress.stage = state["step"], state["stage"]
        progress.stage_start = state["stage_start"]
        progress.vstep, progress.vdone = state.get("vstep", 0), state.get("vdone", True)
        if progress.vdone and "opt" in state:
            opt.load_state_dict(state["opt"])
        print(
            f"resumed from step {progress.step} (stage {progress.stage}; "
            f"vision step {progress.vstep})",
            flush=True,
        )
    if args.stage is not None:
        progress.stage = args.stage
    return Trainer(args.run_dir, cfg, model, head, processor, params, opt, progress)


# ------------------------------------------------------------------------ stage A


def train_vision(
    tr: Trainer, batcher: Batcher, args: argparse.Namespace, state: dict | None
) -> None:
    """Stage A: the vision tower, projector and auxiliary head alone (:func:`vision_forward`)
    until the pattern gate holds (or ``--vision-again`` more steps); logs to
    ``RUN/vision_log.jsonl`` and checkpoints with its own optimiser every 50 steps."""
    cfg, p = tr.cfg, tr.progress
    vision_until = cfg.vision_steps
    if args.vision_again:
        p.vdone, vision_until = False, p.vstep + args.vision_again
    if p.vdone or not cfg.vision_steps > 0:
        return
    vparams = [
        *tr.model.model.vision_tower.parameters(),
        *tr.model.model.multi_modal_projector.parameters(),
        *tr.head.parameters(),
    ]
    vopt = torch.optim.AdamW(vparams, lr=cfg.vision_lr, weight_decay=0.0)
    if state is not None and "vopt" in state:
        vopt.load_state_dict(state["vopt"])
    vwin: dict[str, deque] = defaultdict(lambda: deque(maxlen=20))
    vlog = open(tr.run / "vision_log.jsonl", "a")
    t0 = time.time()
    while p.vstep < vision_until:
        for g in vopt.param_groups:
            g["lr"] = cfg.vision_lr * min(1.0, (p.vstep + 1) / 10)
        nb = max(2, cfg.batch // 2)
        seeds = range(10**8 + p.vstep * nb, 10**8 + (p.vstep + 1) * nb)
        batch = batcher([make_example(sd, 4, cfg, vision_only=True) for sd in seeds])
        vloss, accs = vision_forward(tr.model, tr.head, batch)
        vopt.zero_grad(set_to_none=True)
        vloss.backward()
        torch.nn.utils.clip_grad_norm_(vparams, 1.0)
        vopt.step()
        p.vstep += 1
        for k, v in accs.items():
            vwin[k].append(v)
        means = {k: round(float(np.mean(v)), 3) for k, v in vwin.items()}
        if p.vstep % 10 == 0:
            rec = {"vstep": p.vstep, "time": round(time.time() - t0, 1), "aux": float(vloss)}
            vlog.write(json.dumps({**rec, "acc": means}) + "\n")
            vlog.flush()
            print(f"vision {p.vstep} t={rec['time']}s aux {rec['aux']:.3f} {means}", flush=True)
        if p.vstep % 50 == 0:
            tr.save(vopt=vopt.state_dict())
        gate = means.get("pattern", 0) >= cfg.gate_vision_pattern
        if not args.vision_again and p.vstep >= 40 and gate:
            break
    p.vdone = True
    vlog.close()
    tr.save(vopt=vopt.state_dict())
    print(f"stage A done after {p.vstep} vision steps", flush=True)


# ------------------------------------------------------------------------ answer stage


class Curves:
    """The logged curves of the answer stage: running accuracies by family/view(/objects)
    over the last 300 answers and mean losses since the last record, to ``RUN/log.jsonl``."""

    def __init__(self, path: Path):
        self.window: dict[str, deque] = defaultdict(lambda: deque(maxlen=300))
        self.losses: dict[str, float] = defaultdict(float)
        self.n = 0
        self.log = open(path, "a")
        self.t0 = time.time()

    def add(self, batch, pred, loss, ans_loss, aux_loss) -> None:
        """Count one step's answers and losses."""
        for (_, _, tgt, fam, view, n), p in zip(batch["meta"], pred.tolist()):
            self.window[f"{fam}/{view}/{min(n, 3)}"].append(float(p == tgt))
            self.window[f"{fam}/{view}"].append(float(p == tgt))
        self.losses["loss"] += float(loss.detach())
        self.losses["ans"] += float(ans_loss.detach())
        self.losses["aux"] += float(aux_loss.detach())
        self.n += 1

    def record(self, step: int, stage: int, lr: float) -> None:
        """Write (and print) a record of the steps since the last one, then start afresh."""
        rec = {
            "step": step,
            "time": round(time.time() - self.t0, 1),
            "lr": lr,
            "stage": stage,
            **{k: round(v / self.n, 4) for k, v in self.losses.items()},
            "acc": {k: round(float(np.mean(v)), 3) for k, v in sorted(self.window.items())},
        }
        self.log.write(json.dumps(rec) + "\n")
        self.log.flush()
        short = {k: v for k, v in rec["acc"].items() if k.count("/") == 1}
        print(
            f"step {step} t={rec['time']}s stage {stage} loss {rec['loss']:.3f} "
            f"ans {rec['ans']:.3f} aux {rec['aux']:.3f} {short}",
            flush=True,
        )
        self.losses.clear()
        self.n = 0

    def acc(self, key: str) -> float:
        """Running accuracy of ``key`` (0 with fewer than 50 answers)."""
        v = self.window.get(key)
        return float(np.mean(v)) if v and len(v) >= 50 else 0.0


def answer_step(tr: Trainer, batcher: Batcher, phases: list[tuple[int, dict]]):
    """One answer-stage step: phase settings, learning rate, the step's batch (seeded by the
    step), forward, backward and update. Returns (loss, answer loss, aux loss, batch, preds)."""
    cfg, step = tr.cfg, tr.progress.step
    changed = apply_phases(cfg, step, phases)
    if changed:
        print(f"step {step}: phase settings {', '.join(changed)}", flush=True)
    for g in tr.opt.param_groups:
        g["lr"] = lr_at(step, cfg)
    examples = [
        make_example(step * cfg.batch + b, tr.progress.stage, cfg, step=step)
        for b in range(cfg.batch)
    ]
    batch = batcher(examples)
    ans_loss, aux_loss, pred = forward(tr.model, tr.head, batch, cfg)
    loss = ans_loss + cfg.aux_weight * aux_loss
    tr.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(tr.params, 1.0)
    tr.opt.step()
    tr.progress.step += 1
    return loss, ans_loss, aux_loss, batch, pred


def advance_curriculum(tr: Trainer, curves: Curves) -> None:
    """Curriculum gate: one more object per scene once crop details (and, past stage 1,
    coarse questions) are read well enough, or after ``stage_max_steps`` at a stage."""
    cfg, p = tr.cfg, tr.progress
    if not (p.stage < 4 and p.step - p.stage_start >= cfg.stage_min_steps):
        return
    ok = curves.acc("detail/crop") >= cfg.gate_crop_detail and (
        curves.acc("coarse/full") >= cfg.gate_coarse or p.stage == 1
    )
    if ok or p.step - p.stage_start >= cfg.stage_max_steps:
        p.stage += 1
        p.stage_start = p.step
        curves.window.clear()
        print(f"step {p.step}: curriculum -> stage {p.stage} ({'gate' if ok else 'timeout'})")
        curves.log.write(json.dumps({"step": p.step, "event": f"stage {p.stage}"}) + "\n")


def validate_to_log(tr: Trainer, n: int) -> None:
    """Validation figures at the current step, appended to ``RUN/val.jsonl``."""
    p = tr.progress
    tv = time.time()
    val = validate(tr.model, tr.processor, n, tr.cfg.version)
    rec = {"step": p.step, "stage": p.stage, "val": val, "val_s": round(time.time() - tv, 1)}
    (tr.run / "val.jsonl").open("a").write(json.dumps(rec) + "\n")
    print(f"val @ {p.step}: {val}", flush=True)


def train_answers(tr: Trainer, batcher: Batcher, args: argparse.Namespace) -> None:
    """The answer stage, from the current step to ``--stop-at`` (or the schedule's end):
    steps, curves, curriculum, checkpoints and validation. v2 (not ``--tiny``) applies
    :data:`V2_PHASES` on the way."""
    cfg, p = tr.cfg, tr.progress
    curves = Curves(tr.run / "log.jsonl")
    stop_at = min(cfg.steps, args.stop_at or cfg.steps)
    first_loss = None
    phases = V2_PHASES if args.recipe == "v2" and not args.tiny else []
    while p.step < stop_at:
        loss, ans_loss, aux_loss, batch, pred = answer_step(tr, batcher, phases)
        if first_loss is None:
            first_loss = float(ans_loss.detach())
        curves.add(batch, pred, loss, ans_loss, aux_loss)
        if p.step % args.log_every == 0 or p.step == stop_at:
            curves.record(p.step, p.stage, lr_at(p.step - 1, cfg))
        if args.stage is None:
            advance_curriculum(tr, curves)
        if p.step % args.ckpt_every == 0 or p.step == stop_at:
            tr.save(opt=tr.opt.state_dict())
        if args.val_every and p.step % args.val_every == 0:
            validate_to_log(tr, args.val_n)
    curves.log.close()
    print(f"done: step {p.step}, first answer loss {first_loss}, {time.time() - curves.t0:.0f}s")


# ------------------------------------------------------------------------ main


def main(argv=None) -> int:
    """Plot, export, or train (stage A, then answers) and export; see the module docstring."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.plot:
        plot_curves(args.run_dir, args.plot)
        return 0
    args.run_dir.mkdir(parents=True, exist_ok=True)
    cfg, state = load_config(args)
    tr = start_run(cfg, args, state)
    if args.export_only:
        export(tr.model, tr.processor, args.export_dir)
        print(f"exported step {tr.progress.step} to {args.export_dir}")
        return 0
    (args.run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    n_model = sum(p.numel() for p in tr.model.parameters())
    print(f"model parameters: {n_model:,}; aux head {sum(p.numel() for p in tr.head.parameters())}")

    batcher = Batcher(tr.processor, cfg)
    tr.model.train()
    if cfg.ground_weight > 0:
        tr.model.set_attn_implementation("eager")  # attention weights for the grounding loss
    train_vision(tr, batcher, args, state)
    train_answers(tr, batcher, args)
    if not args.no_export and tr.progress.step >= cfg.steps:
        export(tr.model, tr.processor, args.export_dir)
        print(f"exported to {args.export_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
