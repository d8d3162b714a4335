"""Answer metrics on REFERENCE.md's worked examples and hand-computed cases."""

from __future__ import annotations

import math

import pytest

from egg_interp.errors import InputError
from egg_interp.metrics import (
    anls,
    exact_match,
    multiple_choice_letter,
    multiple_choice_match,
    normalize_vqa_answer,
    parse_yes_no,
    pope_scores,
    vqa_accuracy,
    yes_no_match,
)
from egg_interp.metrics.answers import levenshtein


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Two", "2"),
        ("the cat.", "cat"),
        ("dont", "don't"),
        ("None", "0"),
        ("An apple!", "apple"),
        ("1,000", "1000"),  # comma between digits: punctuation deleted, not spaced
        ("3.5", "3.5"),  # a period before a digit stays
        ("red-white", "red white"),  # punctuation not touching a space becomes a space
        ("hello ,world", "hello world"),  # touching a space: deleted
        ("  Yes\n", "yes"),
        ("couldnt've", "couldn't've"),
        ("ill", "ill"),  # "I'll" without apostrophe is a word: left alone
        ("10:30", "10:30"),
    ],
)
def test_vqa_normalisation(raw, normalised):
    assert normalize_vqa_answer(raw) == normalised


def test_vqa_accuracy_three_of_ten():
    # 3 annotators said "2". Holding out one of the 7 others leaves all 3 matches -> 1.0;
    # holding out one of the 3 leaves 2 matches -> 2/3. Mean = (7 * 1 + 3 * 2/3) / 10 = 0.9
    answers = ["2", "2", "2"] + ["3"] * 7
    assert vqa_accuracy("Two", answers) == pytest.approx(0.9)


def test_vqa_accuracy_other_counts():
    # 1 match: held out -> 0; 9 others -> 1/3 each: 9 * (1/3) / 10 = 0.3
    assert vqa_accuracy("cat", ["cat"] + ["dog"] * 9) == pytest.approx(0.3)
    # 2 matches: 2 * (1/3) + 8 * (2/3) = 18/3 = 6 -> 0.6
    assert vqa_accuracy("cat", ["cat"] * 2 + ["dog"] * 8) == pytest.approx(0.6)
    # 4 matches: every subset keeps >= 3 -> 1.0
    assert vqa_accuracy("the cat.", ["cat"] * 4 + ["dog"] * 6) == 1.0
    assert vqa_accuracy("bird", ["cat"] * 10) == 0.0
    # fewer than 10: 3 answers all matching -> each subset has 2 matches -> 2/3
    assert vqa_accuracy("cat", ["cat"] * 3) == pytest.approx(2 / 3)
    assert vqa_accuracy("Cat.", ["cat"]) == 1.0  # one answer: exact normalised match
    assert math.isnan(vqa_accuracy("cat", []))


def test_levenshtein():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3 and levenshtein("abc", "abc") == 0


def test_anls_worked_example():
    gt = ["Coca Cola", "Coca Cola Company"]
    assert anls("CocaCola", gt) == pytest.approx(1 - 1 / 9)  # one deletion over 9 chars
    assert round(anls("CocaCola", gt), 2) == 0.89
    assert anls("Coca cola", gt) == 1.0
    assert anls("The Coca", gt) == 0.0  # distance 5 over 9 chars: NL >= 0.5


def test_anls_threshold_and_edges():
    assert anls("ab", ["ac"]) == 0.0  # NL = 0.5 exactly is not < tau
    assert anls("ab", ["ac"], tau=0.6) == 0.5
    assert anls("  Hello   World ", ["hello world"]) == 1.0
    assert anls("", [""]) == 1.0
    assert math.isnan(anls("x", []))


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("Yes", "yes"),
        ("yes.", "yes"),
        ("No, there is no dog.", "no"),
        ("Yes, there is no doubt.", "yes"),  # the first word decides
        ("There is no dog in the image.", "no"),
        ("I think the answer is yes", "yes"),
        ("I cannot tell.", None),
        ("", None),
        ("either yes or no", None),
    ],
)
def test_parse_yes_no(text, parsed):
    assert parse_yes_no(text) == parsed


def test_pope_scores_by_hand():
    predictions = ["Yes", "no", "maybe", "yes", "No.", "Yes, it is."]
    labels = ["yes", "yes", "yes", "no", "no", "yes"]
    # parsed: yes no None yes no yes -> TP = 2 (#1, #6), FP = 1 (#4),
    # FN = 2 (#2, and the unparsed #3 counted as "no"), correct = #1, #5, #6
    scores = pope_scores(predictions, labels)
    assert scores["accuracy"] == pytest.approx(3 / 6)
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(2 / 4)
    assert scores["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))
    assert scores["yes_ratio"] == pytest.approx(3 / 6)
    assert scores["n_unparsed"] == 1 and scores["n"] == 6


def test_pope_unparsed_on_a_no_label_is_still_wrong():
    scores = pope_scores(["hmm"], ["no"])
    assert scores["accuracy"] == 0.0 and scores["n_unparsed"] == 1
    assert math.isnan(scores["precision"]) and math.isnan(scores["recall"])
    assert pope_scores(["yes", "no"], [True, False])["accuracy"] == 1.0
    with pytest.raises(InputError):
        pope_scores(["yes"], ["maybe"])
    with pytest.raises(InputError):
        pope_scores(["yes"], [])


OPTIONS = ["red", "blue", "green", "white"]


@pytest.mark.parametrize(
    ("text", "index"),
    [
        ("B", 1),
        ("(c)", 2),
        ("b.", 1),
        ("B) blue", 1),
        ("D. white", 3),
        ("The answer is C", 2),
        ("Option: (d)", 3),
        ("I think (B) is right", 1),
        ("Blue.", 1),  # an option's text
        ("It is green.", 2),
        ("E", None),  # beyond the options
        ("green or blue", None),  # two options named
        ("The answer is a car", None),  # the article is not a letter
    ],
)
def test_multiple_choice_letter(text, index):
    assert multiple_choice_letter(text, OPTIONS) == index


def test_multiple_choice_match():
    assert multiple_choice_match("(A)", ["red"], options=OPTIONS) == 1.0
    assert multiple_choice_match("B", ["A"], options=OPTIONS) == 0.0
    assert multiple_choice_match("no idea", ["A"], options=OPTIONS) == 0.0
    with pytest.raises(InputError):
        multiple_choice_match("A", ["purple"], options=OPTIONS)


def test_exact_match_and_yes_no_match():
    assert exact_match(" Yes. ", ["yes"]) == 1.0
    assert exact_match("Red", ["blue", "red"]) == 1.0
    assert exact_match("red car", ["red"]) == 0.0
    assert math.isnan(exact_match("red", []))
    assert yes_no_match("Yes, there is.", ["yes"]) == 1.0
    assert yes_no_match("unsure", ["no"]) == 0.0
    assert math.isnan(yes_no_match("yes", []))


def test_answer_metrics_are_declared_in_the_registry():
    from egg_interp.metrics.registry import SCORES

    assert SCORES["vqa"].fn is vqa_accuracy
    assert SCORES["anls"].fn is anls and SCORES["exact"].fn is exact_match
    for name in ("vqa", "anls", "exact", "yes_no"):
        assert SCORES[name].compute({"prediction": "yes", "answers": ["yes"]}) == 1.0
