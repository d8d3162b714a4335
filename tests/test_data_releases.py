"""Every release layout the loaders accept, on fixtures written here field by field.

Each fixture follows the official field names, nesting, id formats and file-name patterns of
its release: the DocVQA and InfographicVQA challenge folders (``spdocvqa_*``,
``infographicsvqa_*``), RealWorldQA's parquet shards, GQA's sharded all-questions, POPE's
A-OKVQA and GQA arrays, and the parquet exports of lmms-eval (``lmms-lab/*``: one row per
question, the image as the ``{"bytes", "path"}`` struct of the ``datasets`` Image feature;
GQA's questions and images as separate configs joined by ``imageId``; V*'s options inside
the question text; TextVQA's joined with the Rosetta OCR file). Also: one bad sample never
ends the load, and every sample carries the split it came from.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from egg_interp.data import docvqa, gqa, infovqa, pope, realworldqa, textvqa, vstar
from egg_interp.data._common import answer_words
from egg_interp.data.registry import load_dataset
from egg_interp.data.sample import PROBLEM_KINDS, count_problems, describe_problems
from egg_interp.errors import DatasetFormatError, InputError


def write_json(path: Path, content, indent=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=indent), encoding="utf-8")
    return path


def write_image(path: Path, size=(20, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 30, 30)).save(path)
    return path


def png_bytes(size=(20, 10), color=(10, 200, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def image_cell(size=(20, 10), color=(10, 200, 30)) -> dict:
    """The ``datasets`` Image feature as stored in parquet: a struct of bytes and path."""
    return {"bytes": png_bytes(size, color), "path": None}


def write_parquet(path: Path, rows: list[dict], row_group_size: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)
    return path


# --------------------------------------------------------------------------- RealWorldQA


def test_realworldqa_release_shards_under_data(tmp_path):
    questions = [
        "In which direction is the front wheel of the car on the right side facing?\n"
        "A. Straight\nB. Left\nC. Right\nPlease answer directly with only the letter of "
        "the correct option and nothing else.",
        "How many pedestrians are there?\nPlease answer directly with a single word or number.",
        "Is the traffic light green?",
    ]
    rows = [
        {"image": image_cell((30, 20), (i * 40, 0, 0)), "question": q, "answer": a}
        for i, (q, a) in enumerate(zip(questions, ["C", "2", "No"]))
    ]
    write_parquet(tmp_path / "data" / "test-00000-of-00002.parquet", rows[:2])
    write_parquet(tmp_path / "data" / "test-00001-of-00002.parquet", rows[2:])
    samples = realworldqa.load(tmp_path)
    assert [(s.id, s.answers) for s in samples] == [("0", ["C"]), ("1", ["2"]), ("2", ["No"])]
    assert samples[0].question.startswith("In which direction")
    assert all(s.split == "test" and s.box_source == "none" for s in samples)
    assert samples[2].image.size == (30, 20)
    assert samples[2].image.getpixel((0, 0)) == (80, 0, 0)
    copy = pickle.loads(pickle.dumps(samples[1]))  # lazy parquet images pickle
    assert copy.image.getpixel((0, 0)) == (40, 0, 0)
    assert len(realworldqa.load(tmp_path, limit=2)) == 2


def test_realworldqa_parquet_errors_name_shard_and_column(tmp_path):
    write_parquet(
        tmp_path / "data" / "test-00000-of-00001.parquet",
        [{"image": image_cell(), "question": "q?"}],
    )
    with pytest.raises(DatasetFormatError, match=r"test-00000-of-00001\.parquet: .*'answer'"):
        realworldqa.load(tmp_path)
    write_parquet(
        tmp_path / "data" / "test-00000-of-00001.parquet",
        [{"image": {"bytes": b"not a png", "path": None}, "question": "q?", "answer": "A"}],
    )
    (sample,) = realworldqa.load(tmp_path)  # a corrupt image fails when loaded, not before
    with pytest.raises(InputError, match=r"test-00000-of-00001\.parquet.*row 0"):
        sample.load_image()
    (tmp_path / "data" / "test-00000-of-00001.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(DatasetFormatError, match="cannot read parquet"):
        realworldqa.load(tmp_path)


# --------------------------------------------------------------------------- DocVQA


def msread_page(words, width=300, height=400, status="Succeeded"):
    """A Microsoft Read OCR file: recognitionResults[0].lines[].words[] with 8-number boxes."""
    return {
        "status": status,
        "recognitionResults": [
            {
                "page": 1,
                "clockwiseOrientation": 0.0,
                "width": width,
                "height": height,
                "unit": "pixel",
                "lines": [
                    {
                        "boundingBox": [0, 0, 10, 0, 10, 10, 0, 10],
                        "text": " ".join(w for w, _ in words),
                        "words": [
                            {"boundingBox": box, "text": w, "confidence": "Low"} for w, box in words
                        ],
                    }
                ],
            }
        ],
    }


def make_spdocvqa(root: Path) -> None:
    data = [
        {
            "questionId": 57344,
            "question": "Which university is named?",
            "question_types": ["layout"],
            "image": "documents/ffbf0023_4.png",
            "docId": 4720,
            "ucsf_document_id": "ffbf0023",
            "ucsf_document_page_no": "4",
            "answers": [
                "university of california",
                "University of California",
                "university of california, san diego",
            ],
            "data_split": "val",
        },
        {
            "questionId": 57345,
            "question": "What is the date?",
            "question_types": ["others"],
            "image": "documents/ffbg0023_1.png",
            "docId": 4721,
            "ucsf_document_id": "ffbg0023",
            "ucsf_document_page_no": "1",
            "answers": ["May 1970"],
            "data_split": "val",
        },
        {
            "questionId": 57346,
            "question": "What is the title?",
            "question_types": ["layout"],
            "image": "documents/ffbh0023_2.png",
            "docId": 4722,
            "ucsf_document_id": "ffbh0023",
            "ucsf_document_page_no": "2",
            "answers": ["report"],
            "data_split": "val",
        },
    ]
    write_json(
        root / "spdocvqa_qas" / "val_v1.0_withQT.json",
        {
            "dataset_name": "SP-DocVQA",
            "dataset_version": "1.0",
            "dataset_split": "val",
            "data": data,
        },
    )
    for name in ("ffbf0023_4", "ffbg0023_1", "ffbh0023_2"):
        write_image(root / "spdocvqa_images" / f"{name}.png", (300, 400))
    words = [
        ("University", [10, 20, 60, 20, 60, 30, 10, 30]),
        ("of", [62, 20, 70, 20, 70, 30, 62, 30]),
        ("California,", [72, 20, 120, 20, 120, 30, 72, 30]),
        ("San", [122, 20, 140, 20, 140, 30, 122, 30]),
        ("Diego", [142, 20, 170, 20, 170, 30, 142, 30]),
    ]
    write_json(root / "spdocvqa_ocr" / "ffbf0023_4.json", msread_page(words))
    # a failed OCR run: status Failed, recognitionResults empty
    write_json(
        root / "spdocvqa_ocr" / "ffbg0023_1.json", {"status": "Failed", "recognitionResults": []}
    )
    (root / "spdocvqa_ocr" / "ffbh0023_2.json").write_text("")  # an empty file


def test_docvqa_challenge_layout_keeps_every_answer_variant(tmp_path):
    make_spdocvqa(tmp_path)
    first, failed, empty = docvqa.load(tmp_path)
    assert first.id == "57344" and first.split == "val" and first.box_source == "ocr-proxy"
    # "san diego" is grounded although two variants normalise to the same text
    assert first.meta["proxy_words"] == ["University", "California,", "San", "Diego"]
    assert first.image.size == (300, 400)
    assert failed.boxes == [] and failed.box_source == "none"
    assert failed.meta["problem"].startswith("ocr-failed: ")
    assert empty.meta["problem"].startswith("ocr-empty: ")
    assert count_problems([first, failed, empty]) == {"ocr-empty": 1, "ocr-failed": 1}


def test_answer_variants_are_not_votes():
    answers = [
        "university of california",
        "University of California",
        "university of california, san diego",
    ]
    assert "diego" in answer_words(answers, vote=False)
    assert "diego" not in answer_words(answers)  # TextVQA's vote keeps the majority


def test_docvqa_missing_ocr_file_and_malformed_one(tmp_path):
    make_spdocvqa(tmp_path)
    (tmp_path / "spdocvqa_ocr" / "ffbg0023_1.json").unlink()
    samples = docvqa.load(tmp_path)
    assert samples[1].meta["problem"].startswith("ocr-missing: ")
    content = msread_page([("x", [1, 2, 3])])
    write_json(tmp_path / "spdocvqa_ocr" / "ffbf0023_4.json", content)
    with pytest.raises(DatasetFormatError, match=r"ffbf0023_4\.json: .*words\[0\].*boundingBox"):
        docvqa.load(tmp_path)


def test_docvqa_lmms_parquet_export_has_no_boxes(tmp_path):
    rows = [
        {
            "questionId": "49153",
            "question": "What is the ‘actual’ value per 1000, during the year 1975?",
            "question_types": ["figure/diagram"],
            "image": image_cell((40, 50)),
            "docId": 14465,
            "ucsf_document_id": "pybv0228",
            "ucsf_document_page_no": "81",
            "answers": ["0.28"],
            "data_split": "val",
        }
    ]
    write_parquet(tmp_path / "DocVQA" / "validation-00000-of-00001.parquet", rows)
    (sample,) = docvqa.load(tmp_path)
    assert (sample.id, sample.answers, sample.split) == ("49153", ["0.28"], "val")
    assert sample.boxes == [] and sample.box_source == "none"
    assert sample.meta["question_types"] == ["figure/diagram"]
    assert sample.image.size == (40, 50)
    with pytest.raises(DatasetFormatError, match="spdocvqa_qas.*DocVQA"):
        docvqa.load(tmp_path, split="train")


# --------------------------------------------------------------------------- InfographicVQA


def textract(words, grouped=False):
    blocks = [
        {
            "BlockType": "PAGE",
            "Geometry": {"BoundingBox": {"Left": 0, "Top": 0, "Width": 1, "Height": 1}},
        }
    ]
    for i, (text, box) in enumerate(words):
        left, top, width, height = box
        blocks.append(
            {
                "BlockType": "WORD",
                "Confidence": 99.1,
                "Text": text,
                "Geometry": {
                    "BoundingBox": {"Width": width, "Height": height, "Left": left, "Top": top}
                },
                "Id": f"w{i}",
            }
        )
    if grouped:
        return {"PAGE": blocks[:1], "LINE": [], "WORD": blocks[1:]}
    return {"DocumentMetadata": {"Pages": 1}, "Blocks": blocks}


def make_infographicsvqa(root: Path) -> None:
    def question(qid, name, answers):
        return {
            "questionId": qid,
            "question": "Which social platform has heavy female audience?",
            "image_local_name": f"{name}.jpeg",
            "image_url": f"https://example.org/{name}.jpg",
            "ocr_output_file": f"{name}.json",
            "answers": answers,
            "data_split": "val",
            "answer_type": ["single span"],
            "evidence": ["text"],
            "operation/reasoning": [],
        }

    data = [
        question(65718, "37313", ["pinterest", "Pinterest"]),
        question(65719, "38053", ["facebook"]),  # image never fetched
        question(65720, "30018", ["twitter"]),  # Textract without WORD blocks
    ]
    write_json(
        root / "infographicsvqa_qas" / "infographicsVQA_val_v1.0_withQT.json",
        {
            "dataset_name": "infographicVQA",
            "dataset_version": "1.0",
            "dataset_split": "val",
            "data": data,
        },
    )
    write_image(root / "infographicsvqa_images" / "37313.jpeg", (200, 100))
    write_image(root / "infographicsvqa_images" / "30018.jpeg", (200, 100))
    write_json(
        root / "infographicsvqa_ocr" / "37313.json",
        textract([("Pinterest", (0.5, 0.25, 0.1, 0.2))]),
    )
    write_json(
        root / "infographicsvqa_ocr" / "38053.json",
        textract([("facebook", (0.1, 0.1, 0.1, 0.1))], grouped=True),
    )
    write_json(
        root / "infographicsvqa_ocr" / "30018.json",
        {"DocumentMetadata": {"Pages": 1}, "Blocks": textract([])["Blocks"]},
    )


def test_infovqa_challenge_layout_missing_image_is_not_fatal(tmp_path):
    make_infographicsvqa(tmp_path)
    ok, missing, no_words = infovqa.load(tmp_path)
    assert ok.id == "65718" and ok.split == "val" and ok.box_source == "ocr-proxy"
    assert ok.boxes == [pytest.approx((100, 25, 120, 45))]
    assert missing.boxes == [] and missing.meta["problem"].startswith("image-missing: ")
    with pytest.raises(InputError, match="38053.jpeg"):
        missing.load_image()  # becomes the sample's error line in a run
    assert no_words.meta["problem"].startswith("ocr-empty: ") and no_words.boxes == []
    counts = count_problems([ok, missing, no_words])
    assert counts == {"image-missing": 1, "ocr-empty": 1} and set(counts) <= set(PROBLEM_KINDS)
    assert (
        describe_problems(counts) == "2 samples loaded with a problem: 1 image-missing, 1 ocr-empty"
    )


def test_infovqa_malformed_textract_still_names_file_and_field(tmp_path):
    make_infographicsvqa(tmp_path)
    content = textract([("Pinterest", (0.5, 0.25, 0.1, 0.2))])
    del content["Blocks"][1]["Geometry"]["BoundingBox"]["Left"]
    write_json(tmp_path / "infographicsvqa_ocr" / "37313.json", content)
    with pytest.raises(DatasetFormatError, match=r"37313\.json: Blocks\[1\].*'Left'"):
        infovqa.load(tmp_path)


def test_infovqa_lmms_parquet_export(tmp_path):
    rows = [
        {
            "questionId": "98313",
            "question": "Which social platform has heavy female audience?",
            "answers": ["pinterest"],
            "answer_type": ["single span"],
            "image": image_cell((64, 128)),
            "image_url": "https://i.pinimg.com/originals/x.jpg",
            "operation/reasoning": [],
            "ocr": "{}",
            "data_split": "val",
        }
    ]
    write_parquet(tmp_path / "InfographicVQA" / "validation-00000-of-00001.parquet", rows)
    (sample,) = infovqa.load(tmp_path)
    assert (sample.id, sample.answers, sample.box_source) == ("98313", ["pinterest"], "none")
    assert sample.image.size == (64, 128)


# --------------------------------------------------------------------------- TextVQA


def make_textvqa(root: Path) -> None:
    record = {
        "question": "what is the brand of this camera?",
        "image_id": "003a8ae2ef43b901",
        "image_classes": ["Cassette deck", "Printer"],
        "flickr_original_url": "https://farm2.staticflickr.com/4/5_o.jpg",
        "flickr_300k_url": "https://farm2.staticflickr.com/4/5_z.jpg",
        "image_width": 1024,  # the JSON's size; the file below is 200x100
        "image_height": 664,
        "answers": ["nous les gosses"] * 3 + ["dakota"] * 2 + ["clos culombu"] * 5,
        "question_tokens": ["what", "is", "the", "brand", "of", "this", "camera"],
        "question_id": 34602,
        "set_name": "val",
    }
    write_json(
        root / "TextVQA_0.5.1_val.json",
        {
            "dataset_type": "val",
            "dataset_name": "textvqa",
            "dataset_version": "0.5.1",
            "data": [record],
        },
    )
    write_image(root / "train_images" / "003a8ae2ef43b901.jpg", (200, 100))
    box = {
        "top_left_x": 0.5,
        "top_left_y": 0.25,
        "width": 0.1,
        "height": 0.2,
        "rotation": 0,
        "roll": 0,
        "pitch": 0,
        "yaw": 0,
    }
    ocr = {
        "image_id": "003a8ae2ef43b901",
        "ocr_tokens": ["CLOS"],
        "ocr_info": [{"word": "CLOS", "bounding_box": box}],
    }
    write_json(
        root / "TextVQA_Rosetta_OCR_v0.2_val.json", {"dataset_name": "textvqa", "data": [ocr]}
    )


def test_textvqa_boxes_scale_with_the_image_file_not_the_json(tmp_path):
    make_textvqa(tmp_path)
    (sample,) = textvqa.load(tmp_path)
    assert sample.boxes == [pytest.approx((100, 25, 120, 45))]  # 200x100, not 1024x664
    assert sample.meta["image_size"] == (200, 100) and sample.split == "val"
    (tmp_path / "train_images" / "003a8ae2ef43b901.jpg").unlink()
    (missing,) = textvqa.load(tmp_path)
    assert missing.boxes == [] and missing.meta["problem"].startswith("image-missing")


def test_textvqa_lmms_parquet_export(tmp_path):
    rows = [
        {
            "image_id": "003a8ae2ef43b901",
            "question_id": 34602,
            "question": "what is the brand of this camera?",
            "question_tokens": ["what", "is"],
            "image": image_cell((32, 16)),
            "image_width": 1024,
            "image_height": 664,
            "flickr_original_url": "",
            "flickr_300k_url": "",
            "answers": ["dakota"] * 10,
            "image_classes": ["Camera"],
            "set_name": "val",
            "ocr_tokens": ["DAKOTA"],
        }
    ]
    write_parquet(tmp_path / "data" / "validation-00000-of-00003.parquet", rows)
    (sample,) = textvqa.load(tmp_path)
    assert (sample.id, sample.split, sample.box_source) == ("34602", "val", "none")
    assert len(sample.answers) == 10 and sample.image.size == (32, 16)


def textvqa_parquet_row(image_id, question_id, image, answers):
    """One lmms-lab/textvqa row; image_width/height are the JSON's, not the image's."""
    return {
        "image_id": image_id,
        "question_id": question_id,
        "question": "what is the brand of this camera?",
        "question_tokens": ["what", "is"],
        "image": image,
        "image_width": 1024,
        "image_height": 664,
        "flickr_original_url": "",
        "flickr_300k_url": "",
        "answers": answers,
        "image_classes": ["Camera"],
        "set_name": "val",
        "ocr_tokens": ["CLOS"],
    }


def rosetta_entry(image_id, word="CLOS"):
    box = {"top_left_x": 0.5, "top_left_y": 0.25, "width": 0.1, "height": 0.2, "rotation": 0}
    return {
        "image_id": image_id,
        "ocr_tokens": [word],
        "ocr_info": [{"word": word, "bounding_box": box}],
    }


def make_textvqa_parquet_with_ocr(root: Path, ocr_folder: str = "") -> None:
    answers = ["clos culombu"] * 5 + ["dakota"] * 5 + ["clos"]
    rows = [
        textvqa_parquet_row("003a8ae2ef43b901", 34602, image_cell((200, 100)), answers),
        textvqa_parquet_row("00b4a6f8d0a1a8c9", 34603, {"bytes": None, "path": None}, answers),
        textvqa_parquet_row("0a0bdbd28c8f3d9d", 34604, {"bytes": b"no png", "path": None}, answers),
    ]
    write_parquet(root / "data" / "validation-00000-of-00003.parquet", rows)
    ids = [row["image_id"] for row in rows]
    write_json(
        root / ocr_folder / "TextVQA_Rosetta_OCR_v0.2_val.json",
        {"dataset_name": "textvqa", "data": [rosetta_entry(i) for i in ids]},
    )


@pytest.mark.parametrize("ocr_folder", ["", "data"])  # in data_root, or beside the shards
def test_textvqa_parquet_joins_rosetta_ocr_scaled_by_the_row_image(tmp_path, ocr_folder):
    make_textvqa_parquet_with_ocr(tmp_path, ocr_folder)
    ok, missing, corrupt = textvqa.load(tmp_path)
    assert (ok.id, ok.split, ok.box_source) == ("34602", "val", "ocr-proxy")
    assert ok.boxes == [pytest.approx((100, 25, 120, 45))]  # 200x100 image, not 1024x664
    assert ok.meta["image_size"] == (200, 100) and ok.meta["proxy_words"] == ["CLOS"]
    assert ok.meta["json_image_size"] == (1024, 664)
    assert missing.boxes == [] and missing.box_source == "none"
    assert missing.meta["problem"].startswith("image-missing: ")
    assert "validation-00000-of-00003.parquet" in missing.meta["problem"]
    assert corrupt.meta["problem"].startswith("image-unreadable: ") and corrupt.boxes == []
    assert count_problems([ok, missing, corrupt]) == {"image-missing": 1, "image-unreadable": 1}
    with pytest.raises(InputError, match="no image bytes"):
        missing.load_image()
    copy = pickle.loads(pickle.dumps(ok))
    assert copy.image.size == (200, 100)


def test_textvqa_parquet_malformed_ocr_names_file_and_field(tmp_path):
    make_textvqa_parquet_with_ocr(tmp_path)
    path = tmp_path / "TextVQA_Rosetta_OCR_v0.2_val.json"
    content = json.loads(path.read_text())
    del content["data"][0]["ocr_info"][0]["bounding_box"]["top_left_x"]
    write_json(path, content)
    with pytest.raises(
        DatasetFormatError, match=r"Rosetta_OCR_v0\.2_val\.json: data\[0\].*'top_left_x'"
    ):
        textvqa.load(tmp_path)
    write_json(path, {"dataset_name": "textvqa", "data": [rosetta_entry("003a8ae2ef43b901")]})
    with pytest.raises(DatasetFormatError, match="no entry with image_id '00b4a6f8d0a1a8c9'"):
        textvqa.load(tmp_path)


# --------------------------------------------------------------------------- GQA


def gqa_question(image_id, answer, balanced):
    return {
        "semantic": [{"operation": "select", "dependencies": [], "argument": "cup (o1)"}],
        "entailed": [],
        "equivalent": [],
        "question": "Is there a cup?",
        "imageId": image_id,
        "isBalanced": balanced,
        "groups": {"global": None, "local": "10c-cup"},
        "answer": answer,
        "semanticStr": "select: cup (o1)->exist: ?",
        "annotations": {"answer": {}, "question": {"3": "o1"}, "fullAnswer": {"3": "o1"}},
        "types": {"detailed": "existT", "semantic": "obj", "structural": "verify"},
        "fullAnswer": "Yes, there is a cup.",
    }


@pytest.mark.filterwarnings("ignore:GQA scene graphs not found")
def test_gqa_all_questions_as_shards(tmp_path):
    shards = tmp_path / "questions" / "train_all_questions"
    # shard 10 sorts after shard 2 (numeric order, not by name)
    write_json(
        shards / "train_all_questions_0.json", {"07333408": gqa_question("2375429", "yes", True)}
    )
    write_json(
        shards / "train_all_questions_2.json", {"07333410": gqa_question("2375430", "no", False)}
    )
    write_json(
        shards / "train_all_questions_10.json", {"07333411": gqa_question("2375431", "yes", False)}
    )
    write_json(
        tmp_path / "train_balanced_questions.json",
        {"07333408": gqa_question("2375429", "yes", True)},
    )
    everything = gqa.load(tmp_path, split="train", balanced_only=False)
    assert [s.id for s in everything] == ["07333408", "07333410", "07333411"]
    assert everything[0].split == "train"
    assert [s.id for s in gqa.load(tmp_path, split="train")] == ["07333408"]
    assert len(gqa.load(tmp_path, split="train", balanced_only=False, limit=2)) == 2
    with pytest.raises(DatasetFormatError, match="GQA all questions not found"):
        gqa.load(tmp_path, split="val", balanced_only=False)


def gqa_instruction(qid, image_id, answer, balanced=True):
    """One row of lmms-lab/GQA's ``*_instructions`` configs (train, val, testdev): the
    question JSON's fields as columns, ``annotations`` as lists of objectId/value pairs."""
    return {
        "id": qid,
        "imageId": image_id,
        "question": "Is there a cup?",
        "answer": answer,
        "fullAnswer": "Yes, there is a cup.",
        "isBalanced": balanced,
        "groups": {"global": None, "local": "10c-cup"},
        "entailed": "",
        "equivalent": qid,
        "types": {"detailed": "existT", "semantic": "obj", "structural": "verify"},
        "annotations": {
            "answer": [{"objectId": "2352442", "value": "3"}],
            "fullAnswer": [{"objectId": "2352442", "value": "3"}],
            "question": [{"objectId": "2352442", "value": "3"}],
        },
        "semantic": [{"argument": "cup (2352442)", "dependencies": [], "operation": "select"}],
        "semanticStr": "select: cup (2352442)->exist: ?",
    }


def make_gqa_parquet(root: Path, split: str = "testdev", kind: str = "balanced") -> None:
    rows = [
        gqa_instruction("20968379", "n288870", "yes"),
        gqa_instruction("20968380", "n288870", "no", balanced=False),
        gqa_instruction("20968381", "n161313", "cup"),
        gqa_instruction("20968382", "n999999", "no"),  # image not in the images config
    ]
    instructions = root / f"{split}_{kind}_instructions"
    write_parquet(instructions / f"{split}-00000-of-00001.parquet", rows)
    images = [
        {"id": "n161313", "image": image_cell((40, 30), (0, 0, 90))},
        {"id": "n288870", "image": image_cell((50, 20), (90, 0, 0))},
    ]
    write_parquet(root / f"{split}_{kind}_images" / f"{split}-00000-of-00001.parquet", images)


def test_gqa_lmms_parquet_joins_images_by_image_id(tmp_path):
    make_gqa_parquet(tmp_path)
    samples = gqa.load(tmp_path, split="testdev")
    assert [(s.id, s.answers) for s in samples] == [
        ("20968379", ["yes"]),
        ("20968380", ["no"]),  # the balanced config is read as it is
        ("20968381", ["cup"]),
        ("20968382", ["no"]),
    ]
    first, _, third, missing = samples
    assert first.question == "Is there a cup?" and first.family == "verify"
    assert all(s.split == "testdev" and s.box_source == "none" and not s.boxes for s in samples)
    assert first.meta["source"] == "parquet export (no scene graphs: no boxes)"
    assert first.meta["fullAnswer"] == "Yes, there is a cup."
    assert first.image.size == (50, 20) and third.image.getpixel((0, 0)) == (0, 0, 90)
    assert missing.meta["problem"].startswith("image-missing: imageId 'n999999'")
    assert count_problems(samples) == {"image-missing": 1}
    with pytest.raises(InputError, match="n999999"):
        missing.load_image()
    copy = pickle.loads(pickle.dumps(third))
    assert copy.image.size == (40, 30)
    assert len(gqa.load(tmp_path, split="testdev", limit=2)) == 2
    with pytest.raises(DatasetFormatError, match="val_balanced_instructions"):
        gqa.load(tmp_path)  # val is the default split; only testdev is here


def test_gqa_lmms_parquet_all_questions_filtered_and_test_without_answers(tmp_path):
    make_gqa_parquet(tmp_path, split="val", kind="all")
    balanced = gqa.load(tmp_path, limit=2)  # all_instructions, filtered by isBalanced
    assert [(s.id, s.split) for s in balanced] == [("20968379", "val"), ("20968381", "val")]
    assert len(gqa.load(tmp_path, balanced_only=False)) == 4
    rows = [{"id": "t1", "imageId": "n1", "question": "What is it?", "isBalanced": True}]
    write_parquet(tmp_path / "test_balanced_instructions" / "test-00000-of-00001.parquet", rows)
    write_parquet(
        tmp_path / "test_balanced_images" / "test-00000-of-00001.parquet",
        [{"id": "n1", "image": image_cell()}],
    )
    (test,) = gqa.load(tmp_path, split="test")
    assert (test.id, test.answers, test.split, test.family) == ("t1", [], "test", "")


def test_gqa_lmms_parquet_errors_name_shard_and_column(tmp_path):
    make_gqa_parquet(tmp_path)
    shard = tmp_path / "testdev_balanced_instructions" / "testdev-00000-of-00001.parquet"
    write_parquet(shard, [{"id": "1", "question": "q?", "answer": "yes"}])
    with pytest.raises(DatasetFormatError, match=r"testdev-00000-of-00001\.parquet: .*'imageId'"):
        gqa.load(tmp_path, split="testdev")
    write_parquet(shard, [gqa_instruction("1", "n161313", "yes")])
    for image_shard in (tmp_path / "testdev_balanced_images").glob("*.parquet"):
        image_shard.unlink()
    with pytest.raises(DatasetFormatError, match="GQA images of the parquet export not found"):
        gqa.load(tmp_path, split="testdev")


# --------------------------------------------------------------------------- POPE


def test_pope_aokvqa_and_gqa_arrays(tmp_path):
    aokvqa = [
        {
            "question_id": 1,
            "image": "COCO_val2014_000000262148.jpg",
            "text": "Is there a person in the image?",
            "label": "yes",
        },
        {
            "question_id": 2,
            "image": "COCO_val2014_000000262148.jpg",
            "text": "Is there a giraffe in the image?",
            "label": "no",
        },
    ]
    gqa_rows = [
        {
            "question_id": 1,
            "image": "2354786.jpg",
            "text": "Is there a tree in the image?",
            "label": "yes",
        }
    ]
    write_json(
        tmp_path / "output" / "seem" / "aokvqa" / "aokvqa_pope_seem_popular.json", aokvqa, indent=4
    )
    write_json(tmp_path / "gqa" / "gqa_pope_seem_adversarial.json", gqa_rows, indent=4)
    write_image(tmp_path / "val2014" / "COCO_val2014_000000262148.jpg")
    write_image(tmp_path / "images" / "2354786.jpg", (30, 30))
    samples = pope.load(tmp_path, split="aokvqa_popular")
    assert [(s.id, s.answers, s.family, s.split) for s in samples] == [
        ("1", ["yes"], "popular", "aokvqa_popular"),
        ("2", ["no"], "popular", "aokvqa_popular"),
    ]
    assert samples[0].image.size == (20, 10)
    (g,) = load_dataset("pope", tmp_path, split="gqa_adversarial")
    assert g.image.size == (30, 30) and g.meta["source"] == "gqa"


def test_pope_default_split_is_recorded(tmp_path):
    rows = [
        {
            "question_id": 1,
            "image": "COCO_val2014_000000310196.jpg",
            "text": "Is there a snowboard in the image?",
            "label": "yes",
        }
    ]
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "coco_pope_random.json").write_text(
        "".join(json.dumps(r) + "\n" for r in rows)
    )
    (sample,) = load_dataset("pope", tmp_path)  # no split given
    assert sample.split == "random"


def test_pope_lmms_parquet_filters_by_category(tmp_path):
    rows = [
        {
            "id": str(i),
            "question_id": str(i + 1),
            "question": f"Is there a {obj} in the image?",
            "answer": answer,
            "image_source": "COCO_val2014_000000310196",
            "image": image_cell((24, 12)),
            "category": category,
        }
        for i, (obj, answer, category) in enumerate(
            [
                ("dog", "yes", "adversarial"),
                ("cat", "no", "popular"),
                ("car", "no", "random"),
                ("bus", "yes", "random"),
            ]
        )
    ]
    write_parquet(tmp_path / "data" / "test-00000-of-00003.parquet", rows)
    samples = pope.load(tmp_path)
    assert [(s.id, s.answers, s.split) for s in samples] == [
        ("3", ["no"], "random"),
        ("4", ["yes"], "random"),
    ]
    assert samples[0].image.size == (24, 12)
    assert [s.id for s in pope.load(tmp_path, split="popular")] == ["2"]


# --------------------------------------------------------------------------- V*, splits


def test_vstar_missing_image_is_a_problem_not_an_end(tmp_path):
    write_json(
        tmp_path / "direct_attributes" / "sa_4690.json",
        {
            "target_object": ["glove"],
            "bbox": [[10, 5, 20, 10]],
            "question": "What is the color of the glove?",
            "options": ["black", "white"],
        },
    )
    write_json(
        tmp_path / "relative_position" / "sa_10060.json",
        {
            "target_object": ["dog", "cat"],
            "bbox": [[0, 0, 10, 10], [20, 20, 5, 5]],
            "question": "Is the dog on the left or right of the cat?",
            "options": ["left", "right"],
        },
    )
    write_image(tmp_path / "relative_position" / "sa_10060.jpg", (40, 40))
    missing, ok = vstar.load(tmp_path)
    assert missing.boxes == [] and missing.meta["problem"].startswith("image-missing")
    assert ok.boxes == [(0, 0, 10, 10), (20, 20, 25, 25)] and ok.split == "test"


def vstar_rows():
    """lmms-lab/vstar-bench rows: the options inside ``text``, ``label`` the correct letter."""
    return [
        {
            "image": image_cell((64, 48)),
            "text": "What is the material of the glove?\n(A) rubber\n(B) cotton\n(C) kevlar\n"
            "(D) leather\nAnswer with the option's letter from the given choices directly.",
            "category": "direct_attributes",
            "question_id": "0",
            "label": "A",
        },
        {
            "image": image_cell((32, 32)),
            "text": "What is the color of the dustpan?\n(A) purple\n(B) red\n(C) blue\n(D) white",
            "category": "direct_attributes",
            "question_id": "1",
            "label": "C",
        },
        {
            "image": image_cell((20, 40)),
            "text": "Is the dog on the left or right side of the cat?\n(A) right\n(B) left",
            "category": "relative_position",
            "question_id": "115",
            "label": "B",
        },
    ]


def test_vstar_lmms_parquet_export(tmp_path):
    write_parquet(tmp_path / "data" / "test-00000-of-00001.parquet", vstar_rows())
    glove, dustpan, dog = vstar.load(tmp_path)
    assert (glove.id, glove.answers, glove.options) == (
        "0",
        ["rubber"],
        ["rubber", "cotton", "kevlar", "leather"],
    )
    assert glove.question == vstar.format_question(
        "What is the material of the glove?", glove.options
    )  # the export's trailing instruction is not repeated
    assert (dustpan.answers, dustpan.meta["answer_letter"]) == (["blue"], "C")
    assert (dog.id, dog.family, dog.answers) == ("115", "relative_position", ["left"])
    assert all(s.split == "test" and s.box_source == "none" and not s.boxes for s in [glove, dog])
    assert glove.meta["source"] == "parquet export (no boxes)" and glove.image.size == (64, 48)
    # the export's order is kept: its label refers to it
    assert vstar.load(tmp_path, shuffle_options=True)[1].options == [
        "purple",
        "red",
        "blue",
        "white",
    ]
    (only,) = vstar.load(tmp_path, split="relative_position")
    assert (only.id, only.split) == ("115", "relative_position")
    assert [s.id for s in vstar.load(tmp_path, split="direct_attributes", limit=1)] == ["0"]
    assert len(vstar.load(tmp_path, limit=2)) == 2


def test_vstar_lmms_parquet_errors_name_shard_and_field(tmp_path):
    shard = tmp_path / "data" / "test-00000-of-00001.parquet"
    rows = vstar_rows()
    rows[2]["label"] = "C"  # two options only
    write_parquet(shard, rows)
    with pytest.raises(DatasetFormatError, match=r"test-00000-of-00001\.parquet: row 2: .*'label'"):
        vstar.load(tmp_path)
    rows = vstar_rows()
    rows[0]["text"] = "What is the material of the glove?"
    write_parquet(shard, rows)
    with pytest.raises(DatasetFormatError, match=r"row 0: field 'text'"):
        vstar.load(tmp_path)
    write_parquet(shard, [{k: v for k, v in r.items() if k != "label"} for r in vstar_rows()])
    with pytest.raises(DatasetFormatError, match="missing column 'label'"):
        vstar.load(tmp_path)
