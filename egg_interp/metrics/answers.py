"""Answer scoring: VQA accuracy, ANLS, POPE, multiple choice and exact match.

Every per-question score is called ``fn(prediction, answers)`` and returns a float in
[0, 1], or NaN when there is no ground-truth answer (``multiple_choice_match`` also takes
the options). The names datasets use for them are declared in
:mod:`egg_interp.metrics.registry`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from egg_interp.errors import InputError

# ---------------------------------------------------------------- VQA normalisation

_PROPER_CONTRACTIONS = (
    "ain't aren't can't couldn't couldn't've could've didn't doesn't don't hadn't hadn't've "
    "hasn't haven't he'd he'd've he's how'd how'll how's i'd've i'm i've isn't it'd it'd've "
    "it'll ma'am mightn't mightn't've might've mustn't must've needn't not've o'clock "
    "oughtn't 'ow's'at shan't she'd've she's should've shouldn't shouldn't've somebody'd "
    "somebody'd've somebody'll somebody's someone'd someone'd've someone'll someone's "
    "something'd something'd've something'll that's there'd there'd've there're there's "
    "they'd they'd've they'll they're they've 'twas wasn't we'd've we've weren't what'll "
    "what're what's what've when's where'd where's where've who'd who'd've who'll who's "
    "who've why'll why're why's won't would've wouldn't wouldn't've y'all y'all'll "
    "y'all'd've you'd you'd've you'll you're you've"
).split()
# Apostrophe-less spellings that are ordinary words stay as they are.
_REAL_WORDS = {"ill", "well", "were", "hell", "shell", "wed", "shed", "id", "its", "whore", "lets"}


def _contraction_table() -> dict[str, str]:
    """Map each spelling with some apostrophes missing to the proper contraction."""
    table: dict[str, str] = {}
    for proper in _PROPER_CONTRACTIONS:
        parts = proper.split("'")
        n_gaps = len(parts) - 1
        for keep_bits in range(2**n_gaps - 1):  # every subset of apostrophes but all of them
            out = parts[0]
            for gap in range(n_gaps):
                out += ("'" if keep_bits >> gap & 1 else "") + parts[gap + 1]
            if out not in _REAL_WORDS:
                table[out] = proper
    return table


CONTRACTIONS = _contraction_table()
"""Spellings without (some) apostrophes -> the contraction, e.g. ``"dont" -> "don't"``."""
NUMBER_WORDS = {
    w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten".split())
} | {"none": "0"}
ARTICLES = {"a", "an", "the"}
_PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!'
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")


def normalize_vqa_answer(text: str) -> str:
    """Normalise an answer as the official VQA evaluation does.

    Steps: newlines/tabs to spaces and strip; punctuation (``;/[]"{}()=+\\_-><@`,?!``) is
    deleted where it touches a space, or everywhere when the text has a comma between
    digits ("1,000" -> "1000"), and otherwise becomes a space ("red-white" ->
    "red white"); a period not followed by a digit is deleted ("3.5" stays); lower case;
    number words zero..ten (and "none") become digits; articles a/an/the are dropped;
    apostrophe-less contractions are restored ("dont" -> "don't"). Apostrophes and colons
    are kept. Unlike the official script's table (whose capitalised keys such as "Im"
    never match lower-cased text), contraction keys here are lower case.

    Examples
    --------
    >>> normalize_vqa_answer("The cat.")
    'cat'
    >>> normalize_vqa_answer("Two")
    '2'
    """
    text = text.replace("\n", " ").replace("\t", " ").strip()
    drop = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for p in _PUNCTUATION:
        touches_space = (p + " ") in text or (" " + p) in text
        out = out.replace(p, "" if drop or touches_space else " ")
    out = _PERIOD_NOT_BEFORE_DIGIT.sub("", out)
    words = [NUMBER_WORDS.get(w, w) for w in out.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def _as_list(answers: Sequence[str] | str) -> list[str]:
    return [answers] if isinstance(answers, str) else list(answers)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQA accuracy (VQAv2, TextVQA): the official 10-choose-9 average.

    Each ground-truth answer is held out in turn; the prediction scores
    ``min(1, matches among the other answers / 3)``; the mean over the held-out choices is
    returned. Prediction and answers are compared after :func:`normalize_vqa_answer`
    (always; the official script skips normalisation when all annotators agree).

    Works for any number of answers, but with fewer than 4 a perfect prediction cannot
    reach 1.0 (there are fewer than 3 others to match). A single answer has no others
    and is scored by exact normalised match instead. NaN for no answers.
    """
    gts = [normalize_vqa_answer(a) for a in _as_list(answers)]
    if not gts:
        return float("nan")
    pred = normalize_vqa_answer(prediction)
    if len(gts) == 1:
        return float(pred == gts[0])
    total_matches = sum(g == pred for g in gts)
    return sum(min(1.0, (total_matches - (g == pred)) / 3.0) for g in gts) / len(gts)


# ---------------------------------------------------------------- ANLS


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions, each costing 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _anls_norm(text: str) -> str:
    return " ".join(text.strip().lower().split())


def anls(prediction: str, answers: Sequence[str], tau: float = 0.5) -> float:
    """Average Normalized Levenshtein Similarity for one question (DocVQA, InfoVQA).

    Strings are stripped, lower-cased and their whitespace collapsed;
    ``NL = levenshtein(a, p) / max(len(a), len(p))`` and the score is ``1 - NL`` when
    ``NL < tau``, else 0; the maximum over the answers is returned (average it over
    questions). Two empty strings score 1. NaN for no answers.

    Examples
    --------
    >>> round(anls("CocaCola", ["Coca Cola", "Coca Cola Company"]), 2)
    0.89
    """
    gts = _as_list(answers)
    if not gts:
        return float("nan")
    pred = _anls_norm(prediction)
    best = 0.0
    for gt in map(_anls_norm, gts):
        longest = max(len(gt), len(pred))
        nl = levenshtein(gt, pred) / longest if longest else 0.0
        best = max(best, 1.0 - nl if nl < tau else 0.0)
    return best


# ---------------------------------------------------------------- yes / no, POPE

_WORD = re.compile(r"[a-z]+")


def parse_yes_no(text: str) -> str | None:
    """Read a yes/no answer: ``'yes'``, ``'no'`` or None when it cannot be told.

    The first word decides when it is "yes" or "no" ("Yes, there is a dog." -> 'yes');
    otherwise the answer is the one of "yes" / "no" that occurs as a whole word, if
    exactly one does ("There is no dog." -> 'no'); else None ("I cannot tell.", or
    both words). Case and punctuation are ignored.
    """
    words = _WORD.findall(text.lower())
    if words and words[0] in ("yes", "no"):
        return words[0]
    found = {w for w in words if w in ("yes", "no")}
    return found.pop() if len(found) == 1 else None


def _label(value: str | bool) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    lab = str(value).strip().lower()
    if lab not in ("yes", "no"):
        raise InputError(f"POPE labels must be 'yes' or 'no', got {value!r}")
    return lab


def pope_scores(predictions: Sequence[str], labels: Sequence[str | bool]) -> dict[str, float]:
    """POPE scores over a list of answers, with "yes" as the positive class.

    Parameters
    ----------
    predictions : sequence of str
        Raw model answers, read by :func:`parse_yes_no`.
    labels : sequence of "yes"/"no" (or bool)
        Ground truth, one per prediction.

    Returns
    -------
    dict
        ``accuracy``, ``precision``, ``recall``, ``f1``, ``yes_ratio`` (share of all
        predictions read as yes), ``n_unparsed`` and ``n``. An unparseable answer counts
        as wrong for accuracy and as "no" for precision, recall and F1 (a false negative
        when the label is yes); it is never a yes. A zero denominator gives NaN.
    """
    if len(predictions) != len(labels):
        raise InputError(f"{len(predictions)} predictions but {len(labels)} labels")
    parsed = [parse_yes_no(p) for p in predictions]
    truth = [_label(lab) for lab in labels]
    n = len(parsed)
    tp = sum(p == "yes" and t == "yes" for p, t in zip(parsed, truth))
    fp = sum(p == "yes" and t == "no" for p, t in zip(parsed, truth))
    fn = sum(p != "yes" and t == "yes" for p, t in zip(parsed, truth))
    correct = sum(p == t for p, t in zip(parsed, truth))

    def ratio(num: float, den: float) -> float:
        return num / den if den else float("nan")

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    f1 = ratio(2 * tp, 2 * tp + fp + fn)
    return {
        "accuracy": ratio(correct, n),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": ratio(tp + fp, n),
        "n_unparsed": float(sum(p is None for p in parsed)),
        "n": float(n),
    }


def yes_no_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the parsed prediction equals the parsed first answer, else 0.0.

    An unparseable prediction scores 0.0; NaN when the ground truth is missing or not
    yes/no.
    """
    gts = _as_list(answers)
    truth = parse_yes_no(gts[0]) if gts else None
    if truth is None:
        return float("nan")
    return float(parse_yes_no(prediction) == truth)


# ---------------------------------------------------------------- multiple choice, exact

_LETTER_ALONE = re.compile(r"^[(\[]?([a-z])[)\]]?[.:]?$", re.IGNORECASE)
_LETTER_LEADING = re.compile(r"^[(\[]?([A-Z])[)\].:]")
_LETTER_AFTER_CUE = re.compile(
    r"\b(?i:answer|option|choice)\s*(?i:is|:)?\s*(?:[(\[]([A-Za-z])[)\]]|([A-Z])(?![A-Za-z]))"
)
_LETTER_BRACKETED = re.compile(r"[(\[]([A-Z])[)\]]")


def _em_norm(text: str) -> str:
    text = text.strip().lower()
    return text[:-1].rstrip() if text.endswith(".") else text


def multiple_choice_letter(text: str, options: Sequence[str]) -> int | None:
    """The option index a letter-style answer picks (A = 0), or None.

    Tried in order: the whole answer is one option's text (case-insensitive, trailing
    period ignored); the answer is a bare letter ("b", "(B)", "B."); it starts with an
    upper-case letter followed by ``)``, ``.`` or ``:`` ("B) red", "C. the car" - but
    "A red car" is not read as A); a cue followed by a capital or a bracketed letter
    ("answer is C", "Option: (c)"; not "answer is a car"); exactly one
    bracketed capital letter anywhere; exactly one option's text occurring as whole
    words. A letter beyond the number of options gives None.
    """
    stripped = text.strip()
    norm_options = [_em_norm(o) for o in options]
    if _em_norm(stripped) in norm_options:
        return norm_options.index(_em_norm(stripped))
    letter = None
    for pattern in (_LETTER_ALONE, _LETTER_LEADING, _LETTER_AFTER_CUE):
        match = pattern.search(stripped)
        if match:
            letter = next(g for g in match.groups() if g)
            break
    if letter is None:
        bracketed = set(_LETTER_BRACKETED.findall(stripped))
        letter = bracketed.pop() if len(bracketed) == 1 else None
    if letter is not None:
        index = ord(letter.upper()) - ord("A")
        return index if index < len(options) else None
    lowered = stripped.lower()
    found = [
        i
        for i, o in enumerate(norm_options)
        if o and re.search(r"(?<!\w)" + re.escape(o) + r"(?!\w)", lowered)
    ]
    return found[0] if len(found) == 1 else None


def multiple_choice_match(
    prediction: str, answers: Sequence[str], options: Sequence[str] = ()
) -> float:
    """1.0 when the prediction picks the correct option (V*), else 0.0.

    The correct option is ``answers[0]``, given as a letter ("A", "(B)") or as the
    option's text. An unreadable prediction scores 0.0; NaN for no answers.

    Raises
    ------
    InputError
        If ``answers[0]`` names no option.
    """
    gts = _as_list(answers)
    if not gts:
        return float("nan")
    truth = multiple_choice_letter(gts[0], options)
    if truth is None:
        raise InputError(f"answer {gts[0]!r} is not one of the options {list(options)}")
    return float(multiple_choice_letter(prediction, options) == truth)


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the prediction equals one of the answers, else 0.0 (GQA, RealWorldQA).

    Both sides are stripped, lower-cased and lose one trailing period. NaN for no answers.
    """
    gts = _as_list(answers)
    if not gts:
        return float("nan")
    return float(_em_norm(prediction) in {_em_norm(a) for a in gts})
