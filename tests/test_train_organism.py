"""The organism's training script runs on a tiny config, resumes, and its loss falls."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "analyses"))

import train_organism  # noqa: E402


def _records(run: Path) -> list[dict]:
    lines = (run / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "loss" in r]


def test_tiny_training_loss_falls_and_resumes(tmp_path):
    run, export = tmp_path / "run", tmp_path / "weights"
    args = ["--tiny", "--run-dir", str(run), "--export-dir", str(export), "--log-every", "5"]
    assert train_organism.main([*args, "--steps", "40", "--stop-at", "25", "--val-every", "0"]) == 0
    assert (run / "ckpt.pt").is_file() and not export.exists()
    assert train_organism.main([*args, "--steps", "40", "--val-every", "0"]) == 0
    recs = _records(run)
    assert [r["step"] for r in recs] == list(range(5, 45, 5))  # resumed at 25, no repeat
    assert recs[-1]["ans"] < 0.7 * recs[0]["ans"]
    assert recs[-1]["aux"] < recs[0]["aux"]
    assert (export / "config.json").is_file() and (export / "model.safetensors").is_file()


def test_batches_match_the_processor_layout():
    cfg = train_organism.Config(**train_organism.TINY)
    _, _, processor = train_organism.build(cfg)
    batcher = train_organism.Batcher(processor, cfg)
    ex = next(
        e for e in (train_organism.make_example(i, 3, cfg) for i in range(50)) if len(e.images) > 1
    )
    batch = batcher([ex])
    q = ex.turns[0][0]
    content = [{"type": "image"} for _ in ex.images] + [{"type": "text", "text": q.text}]
    text = processor.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True
    )
    ref = processor(text=text, images=ex.images, return_tensors="pt")
    n = ref["input_ids"].shape[1]
    assert ref["input_ids"][0].tolist() == batch["input_ids"][0, :n].tolist()
    assert (ref["pixel_values"] - batch["pixel_values"]).abs().max() < 1e-6
    # the first answer is the target of the prompt's last position
    tok = processor.tokenizer
    assert batch["labels"][0, n - 1].item() == tok.convert_tokens_to_ids(q.answer)


def test_no_question_gives_away_another_answer():
    cfg = train_organism.Config(**train_organism.TINY)
    for i in range(200):
        ex = train_organism.make_example(i, 4, cfg)
        qs = [t[0] for t in ex.turns]
        assert len({q.text for q in qs}) == len(qs)
        for q in qs:
            others = " ".join(o.text for o in qs if o is not q).replace("?", " ").split()
            assert q.answer not in others


def test_no_earlier_answer_gives_away_a_later_question():
    """Answers stay in the context: yes/no questions come first, and a "same pattern?"
    question never shares an object with a pattern question of the same sequence."""
    cfg = train_organism.Config(**train_organism.TINY)
    seen_multi = 0
    for i in range(300):
        qs = [t[0] for t in train_organism.make_example(i, 4, cfg).turns]
        fams = [q.family in ("existence", "multi") for q in qs]
        assert fams == sorted(fams, reverse=True), [q.text for q in qs]
        for m in (q for q in qs if q.family == "multi"):
            seen_multi += 1
            details = [q for q in qs if q.family == "detail"]
            assert not any(set(d.evidence) & set(m.evidence) for d in details)
    assert seen_multi > 10
