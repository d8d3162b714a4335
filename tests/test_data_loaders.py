"""Benchmark loaders on tiny fixtures written here in each benchmark's official format."""

from __future__ import annotations

import doctest
import json
import pickle
import warnings
from pathlib import Path

import pytest
from PIL import Image

import egg_interp.data._common as common
from egg_interp.data import docvqa, gqa, infovqa, pope, realworldqa, textvqa, vstar
from egg_interp.data.registry import DATASETS, METRICS, answer_metric, load_dataset
from egg_interp.errors import DatasetFormatError, InputError
from egg_interp.geometry import clip_box


def write_json(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_image(path: Path, size=(20, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 30, 30)).save(path)
    return path


# --------------------------------------------------------------------------- helpers


def test_docstring_examples():
    for module in (common, vstar):
        assert doctest.testmod(module).failed == 0


def test_normalisation_and_most_common_answers():
    assert common.normalize_word("  Coca-Cola!") == "cocacola"
    assert common.normalize_word("$1,000") == "1000"
    assert common.most_common_answers(["Nike", "nike", "adidas"]) == ["Nike"]
    assert common.most_common_answers(["x", "y"]) == ["x", "y"]
    assert common.answer_words(["The Exit"]) == {"exit"}
    assert common.answer_words(["the"]) == {"the"}  # only stop words: keep them


def test_clip_box_and_bad_limit():
    assert clip_box((-5, 2, 30, 8), (20, 10), strict=False) == (0.0, 2.0, 20.0, 8.0)
    assert clip_box((25, 2, 30, 8), (20, 10), strict=False) is None
    assert clip_box((3, 3, 3, 8), (20, 10), strict=False) is None
    assert common.clip_boxes([(-5, 2, 30, 8), (25, 2, 30, 8)], 20, 10) == ([(0, 2, 20, 8)], 1)
    with pytest.raises(InputError, match="limit"):
        pope.load("unused", limit=-1)


def test_invalid_json_names_file(tmp_path):
    path = tmp_path / "TextVQA_0.5.1_val.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="TextVQA_0.5.1_val.json.*invalid JSON"):
        textvqa.load(tmp_path)


def test_missing_and_corrupt_image_name_the_file(tmp_path):
    missing = common.lazy_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match="nope.png"):
        missing()
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match="bad.jpg"):
        common.lazy_image(bad)()


# --------------------------------------------------------------------------- V*


def make_vstar(root: Path) -> None:
    write_image(root / "direct_attributes" / "sa_1.jpg", (100, 50))
    write_json(
        root / "direct_attributes" / "sa_1.json",
        {
            "target_object": ["cup", "hat"],
            "bbox": [[10, 5, 20, 10], [90, 40, 30, 30]],
            "question": "What is the color of the cup?",
            "options": ["white", "red", "blue", "green"],
        },
    )
    write_image(root / "relative_position" / "sa_2.png", (40, 40))
    write_json(
        root / "relative_position" / "sa_2.json",
        {
            "target_object": ["dog", "cat"],
            "bbox": [[0, 0, 10, 10], [20, 20, 5, 5]],
            "question": "Is the dog left or right of the cat?",
            "options": ["left", "right"],
        },
    )


def test_vstar(tmp_path):
    make_vstar(tmp_path)
    samples = vstar.load(tmp_path)
    assert [s.id for s in samples] == ["direct_attributes/sa_1", "relative_position/sa_2"]
    first = samples[0]
    assert first.family == "direct_attributes" and first.box_source == "annotation"
    assert first.answers == ["white"]
    assert sorted(first.options) == ["blue", "green", "red", "white"]
    letter = first.meta["answer_letter"]
    assert f"({letter}) white" in first.question
    assert first.question.startswith("What is the color of the cup?\n(A) ")
    assert first.question.endswith(vstar.MC_INSTRUCTION)
    # [x, y, w, h] -> (x0, y0, x1, y1); the second box is clipped to the 100x50 image
    assert first.boxes == [(10, 5, 30, 15), (90, 40, 100, 50)]
    assert first.image.size == (100, 50)
    assert vstar.load(tmp_path)[0].options == first.options  # stable shuffle


def test_vstar_options_order_family_split_and_limit(tmp_path):
    make_vstar(tmp_path)
    plain = vstar.load(tmp_path, shuffle_options=False)
    assert plain[1].options == ["left", "right"] and plain[1].meta["answer_letter"] == "A"
    assert [s.id for s in vstar.load(tmp_path, split="relative_position")] == [
        "relative_position/sa_2"
    ]
    assert len(vstar.load(tmp_path, limit=1)) == 1
    with pytest.raises(InputError, match="valid splits"):
        vstar.load(tmp_path, split="val")


def test_vstar_errors_name_file_and_field(tmp_path):
    make_vstar(tmp_path)
    path = tmp_path / "direct_attributes" / "sa_1.json"
    record = json.loads(path.read_text())
    del record["options"]
    write_json(path, record)
    with pytest.raises(DatasetFormatError, match=r"sa_1\.json.*'options'"):
        vstar.load(tmp_path)
    record["options"], record["bbox"] = ["a", "b"], [[1, 2, 3]]
    write_json(path, record)
    with pytest.raises(DatasetFormatError, match=r"sa_1\.json: bbox\[0\]"):
        vstar.load(tmp_path)
    (tmp_path / "direct_attributes" / "sa_1.jpg").unlink()
    record["bbox"] = [[1, 2, 3, 4]]
    write_json(path, record)
    (sample, _) = vstar.load(tmp_path)  # one missing image never ends the load
    assert sample.boxes == [] and sample.meta["problem"].startswith("image-missing: ")
    with pytest.raises(InputError, match=r"sa_1\.jpg"):
        sample.load_image()


# --------------------------------------------------------------------------- TextVQA


def make_textvqa(root: Path, with_ocr: bool = True) -> None:
    answers = ["Stop"] * 6 + ["stop sign"] * 3 + ["go"]
    write_json(
        root / "TextVQA_0.5.1_val.json",
        {
            "dataset_name": "textvqa",
            "data": [
                {
                    "image_id": "abc",
                    "question_id": 34602,
                    "question": "what does the sign say?",
                    "answers": answers,
                    "image_width": 200,
                    "image_height": 100,
                },
                {
                    "image_id": "def",
                    "question_id": 34603,
                    "question": "what brand?",
                    "answers": ["nike"] * 10,
                    "image_width": 50,
                    "image_height": 50,
                },
            ],
        },
    )
    write_image(root / "train_images" / "abc.jpg", (200, 100))

    def token(word, x, y, w, h):
        box = {"top_left_x": x, "top_left_y": y, "width": w, "height": h, "rotation": 0}
        return {"word": word, "bounding_box": box}

    if with_ocr:
        ocr = [
            {
                "image_id": "abc",
                "ocr_tokens": ["STOP", "sign", "go"],
                "ocr_info": [
                    token("STOP", 0.5, 0.25, 0.1, 0.2),
                    token("sign", 0.1, 0.1, 0.1, 0.1),
                    token("go", 0.0, 0.0, 0.1, 0.1),
                ],
            },
            {"image_id": "def", "ocr_tokens": [], "ocr_info": []},
        ]
        write_json(root / "TextVQA_Rosetta_OCR_v0.2_val.json", {"data": ocr})


def test_textvqa_ocr_proxy_picks_most_common_answer_words(tmp_path):
    make_textvqa(tmp_path)
    samples = textvqa.load(tmp_path)
    assert [s.id for s in samples] == ["34602", "34603"]
    first = samples[0]
    assert first.question == "what does the sign say?" and len(first.answers) == 10
    assert first.box_source == "ocr-proxy"
    # only "Stop" (6 votes) is kept: "sign" and "go" are not matched
    assert first.meta["proxy_words"] == ["STOP"]
    assert first.boxes == [pytest.approx((100, 25, 120, 45))]
    assert samples[1].boxes == []
    assert first.image.size == (200, 100)
    assert len(textvqa.load(tmp_path, limit=1)) == 1


def test_textvqa_without_ocr_and_errors(tmp_path):
    make_textvqa(tmp_path, with_ocr=False)
    with pytest.warns(UserWarning, match="Rosetta"):
        samples = textvqa.load(tmp_path)
    assert samples[0].box_source == "none" and samples[0].boxes == []

    path = tmp_path / "TextVQA_0.5.1_val.json"
    content = json.loads(path.read_text())
    del content["data"][1]["image_width"]
    write_json(path, content)
    with pytest.raises(
        DatasetFormatError, match=r"TextVQA_0\.5\.1_val\.json: data\[1\].*image_width"
    ):
        textvqa.load(tmp_path)
    with pytest.raises(DatasetFormatError, match="TextVQA_0.5.1_train.json: file not found"):
        textvqa.load(tmp_path, split="train")


# --------------------------------------------------------------------------- DocVQA


def make_docvqa(root: Path) -> Path:
    split_dir = root / "val"
    write_json(
        split_dir / "val_v1.0_withQT.json",
        {
            "dataset_split": "val",
            "data": [
                {
                    "questionId": 49153,
                    "question": "What is the total?",
                    "image": "documents/pybv0228_81.png",
                    "docId": 14465,
                    "answers": ["$1,000", "1000 dollars"],
                    "question_types": ["table/list"],
                },
            ],
        },
    )
    write_image(split_dir / "documents" / "pybv0228_81.png", (300, 400))
    words = [
        {"boundingBox": [10, 20, 50, 22, 49, 40, 9, 38], "text": "Total:"},
        {"boundingBox": [60, 20, 100, 20, 100, 40, 60, 40], "text": "$1,000"},
        {"boundingBox": [110, 20, 170, 20, 170, 40, 110, 40], "text": "Dollars"},
    ]
    write_json(
        split_dir / "ocr_results" / "pybv0228_81.json",
        {
            "status": "Succeeded",
            "recognitionResults": [
                {
                    "page": 1,
                    "width": 300,
                    "height": 400,
                    "unit": "pixel",
                    "lines": [
                        {
                            "boundingBox": [10, 20, 170, 20, 170, 40, 10, 40],
                            "text": "x",
                            "words": words,
                        }
                    ],
                }
            ],
        },
    )
    return split_dir


def test_docvqa(tmp_path):
    make_docvqa(tmp_path)
    (sample,) = docvqa.load(tmp_path)
    assert sample.id == "49153" and sample.answers == ["$1,000", "1000 dollars"]
    assert sample.meta["question_types"] == ["table/list"]
    assert sample.box_source == "ocr-proxy"
    assert sample.meta["proxy_words"] == ["$1,000", "Dollars"]
    assert sample.boxes == [(60, 20, 100, 40), (110, 20, 170, 40)]
    assert sample.meta["image_size"] == (300, 400)
    assert sample.image.size == (300, 400)


def test_docvqa_missing_ocr_field_and_corrupt_image(tmp_path):
    split_dir = make_docvqa(tmp_path)
    ocr_path = split_dir / "ocr_results" / "pybv0228_81.json"
    content = json.loads(ocr_path.read_text())
    del content["recognitionResults"][0]["lines"][0]["words"][1]["boundingBox"]
    write_json(ocr_path, content)
    with pytest.raises(DatasetFormatError, match=r"pybv0228_81\.json: .*words\[1\].*boundingBox"):
        docvqa.load(tmp_path)
    ocr_path.unlink()
    (sample,) = docvqa.load(tmp_path)  # a missing OCR page: no boxes, not the end of the load
    assert sample.boxes == [] and sample.meta["problem"].startswith("ocr-missing: ")
    (split_dir / "ocr_results").rmdir()
    (split_dir / "documents" / "pybv0228_81.png").write_bytes(b"\x89PNG broken")
    with pytest.warns(UserWarning, match="OCR"):
        (sample,) = docvqa.load(tmp_path)
    with pytest.raises(InputError, match="pybv0228_81.png"):
        sample.load_image()


# --------------------------------------------------------------------------- InfographicVQA


def textract_word(text, left, top, width, height):
    box = {"Left": left, "Top": top, "Width": width, "Height": height}
    return {"BlockType": "WORD", "Text": text, "Geometry": {"BoundingBox": box}}


def make_infovqa(root: Path, grouped: bool) -> Path:
    split_dir = root / "val"
    write_json(
        split_dir / "infographicsVQA_val_v1.0_withQT.json",
        {
            "data": [
                {
                    "questionId": 98313,
                    "question": "Which social platform has heavy female audience?",
                    "image_local_name": "37313.jpeg",
                    "ocr_output_file": "37313.json",
                    "answers": ["pinterest"],
                    "answer_type": ["single span"],
                }
            ]
        },
    )
    write_image(split_dir / "images" / "37313.jpeg", (200, 100))
    words = [
        textract_word("Pinterest", 0.5, 0.25, 0.1, 0.2),
        textract_word("Facebook", 0.1, 0.1, 0.2, 0.1),
    ]
    line = {"BlockType": "LINE", "Text": "Pinterest", "Geometry": words[0]["Geometry"]}
    content = {"LINE": [line], "WORD": words} if grouped else {"Blocks": [line, *words]}
    write_json(split_dir / "ocr_results" / "37313.json", content)
    return split_dir


@pytest.mark.parametrize("grouped", [False, True])
def test_infovqa_textract_box_in_pixels(tmp_path, grouped):
    make_infovqa(tmp_path, grouped)
    (sample,) = infovqa.load(tmp_path)
    assert sample.id == "98313" and sample.answers == ["pinterest"]
    assert sample.meta["answer_type"] == ["single span"]
    assert sample.meta["proxy_words"] == ["Pinterest"]
    # Left=0.5, Top=0.25, Width=0.1, Height=0.2 on a 200x100 page
    assert sample.boxes == [pytest.approx((100, 25, 120, 45))]
    assert sample.meta["image_size"] == (200, 100)


def test_infovqa_errors(tmp_path):
    split_dir = make_infovqa(tmp_path, grouped=False)
    ocr_path = split_dir / "ocr_results" / "37313.json"
    content = json.loads(ocr_path.read_text())
    del content["Blocks"][2]["Geometry"]["BoundingBox"]["Width"]
    write_json(ocr_path, content)
    with pytest.raises(DatasetFormatError, match=r"37313\.json: Blocks\[2\].*'Width'"):
        infovqa.load(tmp_path)
    write_json(ocr_path, {"Other": []})
    with pytest.raises(DatasetFormatError, match=r"37313\.json.*'Blocks'"):
        infovqa.load(tmp_path)
    (split_dir / "images" / "37313.jpeg").unlink()
    write_json(ocr_path, {"Blocks": []})
    (sample,) = infovqa.load(tmp_path)  # a missing image: no boxes, an error line when run
    assert sample.boxes == [] and sample.meta["problem"].startswith("image-missing: ")
    with pytest.raises(InputError, match="37313.jpeg"):
        sample.load_image()
    with pytest.raises(DatasetFormatError, match="questions file not found"):
        infovqa.load(tmp_path, split="train")


# --------------------------------------------------------------------------- POPE


def make_pope(root: Path) -> None:
    rows = [
        {
            "question_id": i,
            "image": "COCO_val2014_000000000001.jpg",
            "text": f"Is there a {o}?",
            "label": label,
        }
        for i, (o, label) in enumerate([("dog", "yes"), ("cat", "no"), ("car", "yes")], 1)
    ]
    write_jsonl(root / "coco_pope_adversarial.json", rows)
    write_image(root / "val2014" / "COCO_val2014_000000000001.jpg")


def test_pope(tmp_path):
    make_pope(tmp_path)
    samples = pope.load(tmp_path, split="adversarial", limit=2)
    assert [(s.id, s.question, s.answers) for s in samples] == [
        ("1", "Is there a dog?", ["yes"]),
        ("2", "Is there a cat?", ["no"]),
    ]
    assert samples[0].family == "adversarial" and samples[0].boxes == []
    assert samples[0].box_source == "none"
    assert samples[0].image.size == (20, 10)
    with pytest.raises(DatasetFormatError, match="coco_pope_random"):
        pope.load(tmp_path)


def test_pope_bad_line_and_label(tmp_path):
    path = tmp_path / "coco_pope_random.json"
    path.write_text('{"question_id": 1, "image": "a.jpg", "text": "q", "label": "maybe"}\n')
    with pytest.raises(DatasetFormatError, match=r"coco_pope_random\.json: line 1: field 'label'"):
        pope.load(tmp_path)
    path.write_text('{"question_id": 1, "image": "a.jpg", "label": "yes"}\n\n{oops\n')
    with pytest.raises(DatasetFormatError, match=r"coco_pope_random\.json: line 3: invalid JSON"):
        pope.load(tmp_path)
    path.write_text('{"question_id": 1, "image": "a.jpg", "label": "yes"}\n')
    with pytest.raises(DatasetFormatError, match=r"line 1: missing field 'text'"):
        pope.load(tmp_path)


# --------------------------------------------------------------------------- GQA


def make_gqa(root: Path) -> None:
    questions = {
        "201": {
            "imageId": "n1",
            "question": "What color is the cup on the table?",
            "answer": "white",
            "fullAnswer": "The cup is white.",
            "isBalanced": True,
            "types": {"structural": "query", "semantic": "attr"},
            "annotations": {
                "question": {"4": "o1", "7": "o2"},
                "answer": {},
                "fullAnswer": {"1": "o1", "3": "o9"},
            },
        },
        "202": {
            "imageId": "n1",
            "question": "Is there a cup?",
            "answer": "yes",
            "isBalanced": False,
            "annotations": {"question": {"3": "o1"}, "answer": {}, "fullAnswer": {}},
        },
        "203": {
            "imageId": "n1",
            "question": "Is it sunny?",
            "answer": "no",
            "isBalanced": True,
            "annotations": {"question": {}, "answer": {}, "fullAnswer": {}},
        },
    }
    write_json(root / "val_balanced_questions.json", {k: questions[k] for k in ("201", "203")})
    write_json(root / "questions" / "val_all_questions.json", questions)
    write_json(root / "testdev_balanced_questions.json", {"201": questions["201"]})
    graph = {
        "width": 100,
        "height": 80,
        "objects": {
            "o1": {"name": "cup", "x": 10, "y": 20, "w": 5, "h": 6, "attributes": ["white"]},
            "o2": {"name": "table", "x": 0, "y": 50, "w": 120, "h": 30},
        },
    }
    write_json(root / "sceneGraphs" / "val_sceneGraphs.json", {"n1": graph})
    write_image(root / "images" / "n1.jpg", (100, 80))


def test_gqa_boxes_from_scene_graph(tmp_path):
    make_gqa(tmp_path)
    samples = gqa.load(tmp_path)
    assert [s.id for s in samples] == ["201", "203"]
    first = samples[0]
    assert first.answers == ["white"] and first.family == "query"
    assert first.box_source == "annotation"
    assert first.meta["object_ids"] == ["o1", "o2", "o9"]
    assert first.meta["missing_objects"] == ["o9"]
    # o1 (10, 20, 5, 6) -> (10, 20, 15, 26); o2 clipped to the 100x80 image
    assert first.boxes == [(10, 20, 15, 26), (0, 50, 100, 80)]
    assert samples[1].boxes == []
    assert first.image.size == (100, 80)


def test_gqa_balanced_filter_testdev_and_limit(tmp_path):
    make_gqa(tmp_path)
    everything = gqa.load(tmp_path, balanced_only=False)
    assert [s.id for s in everything] == ["201", "202", "203"]
    assert [s.id for s in gqa.load(tmp_path, limit=1)] == ["201"]
    (testdev,) = gqa.load(tmp_path, split="testdev")
    assert testdev.boxes == [] and testdev.box_source == "none"
    assert testdev.answers == ["white"]


def test_gqa_errors(tmp_path):
    make_gqa(tmp_path)
    graphs_path = tmp_path / "sceneGraphs" / "val_sceneGraphs.json"
    graphs = json.loads(graphs_path.read_text())
    del graphs["n1"]["objects"]["o1"]["w"]
    write_json(graphs_path, graphs)
    with pytest.raises(DatasetFormatError, match=r"val_sceneGraphs\.json: .*o1: missing field 'w'"):
        gqa.load(tmp_path)
    write_json(tmp_path / "val_balanced_questions.json", {"201": {"imageId": "n1"}})
    with pytest.raises(DatasetFormatError, match=r"val_balanced_questions\.json.*'isBalanced'"):
        gqa.load(tmp_path)
    with pytest.raises(DatasetFormatError, match="GQA questions not found"):
        gqa.load(tmp_path, split="train")


# --------------------------------------------------------------------------- RealWorldQA


def test_realworldqa_jsonl_and_json(tmp_path):
    rows = [
        {"image": "images/0.png", "question": "How many lanes?\nA. 1\nB. 2", "answer": "B"},
        {"id": "x7", "image": "images/1.png", "question": "Is it raining?", "answer": "No"},
    ]
    write_jsonl(tmp_path / "realworldqa.jsonl", rows)
    write_image(tmp_path / "images" / "0.png")
    samples = realworldqa.load(tmp_path)
    assert [(s.id, s.answers) for s in samples] == [("0", ["B"]), ("x7", ["No"])]
    assert samples[0].question.startswith("How many lanes?") and samples[0].boxes == []
    assert samples[0].image.size == (20, 10)
    with pytest.raises(InputError, match="1.png"):
        samples[1].load_image()

    (tmp_path / "realworldqa.jsonl").unlink()
    write_json(tmp_path / "realworldqa.json", rows[:1])
    assert [s.id for s in realworldqa.load(tmp_path, limit=5)] == ["0"]
    write_json(tmp_path / "realworldqa.json", [{"image": "a.png", "question": "q"}])
    with pytest.raises(
        DatasetFormatError, match=r"realworldqa\.json: \[0\]: missing field 'answer'"
    ):
        realworldqa.load(tmp_path)


def test_realworldqa_broken_parquet_names_the_shard(tmp_path):
    (tmp_path / "test-00000-of-00001.parquet").write_bytes(b"PAR1")
    with pytest.raises(DatasetFormatError, match=r"test-00000-of-00001\.parquet: cannot read"):
        realworldqa.load(tmp_path)


# --------------------------------------------------------------------------- registry


def test_registry_entries_and_metrics():
    assert set(DATASETS) >= {"vstar", "textvqa", "docvqa", "infovqa", "pope", "gqa", "realworldqa"}
    for name, entry in DATASETS.items():
        assert entry.metric in METRICS
        assert callable(entry.loader), name
    assert answer_metric("docvqa") == "anls" and answer_metric("vstar") == "multiple_choice"


def test_load_dataset_passes_split_and_limit(tmp_path):
    make_pope(tmp_path)
    samples = load_dataset("pope", tmp_path, split="adversarial", limit=1)
    assert [s.id for s in samples] == ["1"] and samples[0].dataset == "pope"
    make_vstar(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_dataset("vstar", tmp_path)) == 2


def test_unknown_dataset_lists_valid_names(tmp_path):
    with pytest.raises(InputError, match="unknown dataset 'vqav2'.*docvqa.*gqa.*vstar"):
        load_dataset("vqav2", tmp_path)


@pytest.mark.parametrize(
    "name", ["vstar", "textvqa", "docvqa", "infovqa", "pope", "gqa", "realworldqa"]
)
def test_every_loader_names_the_missing_file(tmp_path, name):
    with pytest.raises(DatasetFormatError, match=str(tmp_path)):
        load_dataset(name, tmp_path)


def test_samples_pickle(tmp_path):
    make_vstar(tmp_path)
    sample = vstar.load(tmp_path, limit=1)[0]
    copy = pickle.loads(pickle.dumps(sample))
    assert copy.id == sample.id and copy.image.size == (100, 50)
