"""MMBench-format multiple-choice VQA from a local TSV, and a robust scorer of the chosen letter.

MMBench (and the many benchmarks published in its layout by VLMEvalKit) is one TSV file: columns
``index, question, hint, A, B, C, D, answer, category, image`` (optionally more options ``E``...,
``l2-category``, ``source``, ``split``, ``comment``). ``image`` is a base64-encoded picture, or, in
the circular-evaluation files, the ``index`` of another row whose picture it shares. Test splits
leave ``answer`` empty. Empty cells (or pandas' "nan") mean "absent" for hints and options.

Here it measures what a defense or a neuron intervention costs in general multimodal ability (SGM
keeps it; a defense that wrecks it is not a defense). Samples are "benign": a refusal is over-refusal.
Score answers with :func:`mc_accuracy`; bad rows are reported with file, line and field and skipped.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from safeglass.data.dataset import Dataset
from safeglass.data.errors import DataError, LoadReport
from safeglass.data.records import (
    BadRecord,
    Located,
    collect,
    make_dataset,
    path_provenance,
    read_text,
    require_path,
)
from safeglass.types import ImageRef, Sample

# safeglass's own wording; pass instruction= to use another (e.g. the one a paper reports with)
DEFAULT_INSTRUCTION = "Answer with the option's letter from the given choices directly."
REQUIRED = ("index", "question", "A", "B", "image")
_MISSING = {"", "nan", "none"}
# a circular-evaluation row names another row's index instead of holding an image
_MAX_REF_LEN = 64


def load_mmbench(path: str | None = None, limit: int | None = None, instruction: str = DEFAULT_INSTRUCTION) -> Dataset:
    """An MMBench-format TSV as multiple-choice samples (image + hint + question + lettered options).

    Args:
        path: the MMBench-format .tsv file (not a folder).
        instruction: the text appended after the lettered options, telling the model how to answer.
    """
    file = require_path(path, "mmbench", "MMBench-format TSV file")
    if not file.is_file():
        raise DataError(f"mmbench: {file} is a folder; pass the .tsv file itself")
    report = LoadReport()
    rows, letters = _read_tsv(file, report)
    images = {row["index"].strip(): row["image"] for _, row in rows
              if row.get("index") and not _is_reference(row.get("image") or "")}

    def build(where: str, row: dict[str, str]) -> Sample:
        return _sample(row, letters, images, instruction)

    samples = collect(rows, build, file, report, limit)
    prov = {**path_provenance(file), "format": "mmbench-tsv", "options": list(letters)}
    return make_dataset("mmbench", samples, prov, report)


def _read_tsv(file: Path, report: LoadReport) -> tuple[list[Located], tuple[str, ...]]:
    """Rows located by the file line they start on (quoted cells may span lines), and the option letters."""
    reader = csv.reader(io.StringIO(read_text(file), newline=""), delimiter="\t")
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise DataError(f"mmbench: {file} is empty (no header row)") from None
    except csv.Error as exc:
        raise DataError(f"mmbench: cannot parse the header of {file}: {exc}") from exc
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise DataError(f"mmbench: {file} lacks column(s) {', '.join(missing)}; found: {', '.join(header)}")
    letters = tuple(h for h in header if len(h) == 1 and h.isupper())
    rows: list[Located] = []
    line = reader.line_num
    while True:
        start = line + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            report.add(str(file), f"line {start}", "<tsv>", f"malformed TSV: {exc}")
            line = reader.line_num
            continue
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            report.add(str(file), f"line {start}", "<tsv>", f"{len(cells)} cells for {len(header)} columns")
            continue
        rows.append((f"line {start}", dict(zip(header, cells))))
    return rows, letters


def _present(value: str | None) -> str | None:
    if value is None or value.strip().lower() in _MISSING:
        return None
    return value.strip()


def _is_reference(image: str) -> bool:
    return 0 < len(image.strip()) <= _MAX_REF_LEN and image.strip().isdigit()


def _sample(row: dict[str, str], letters: Sequence[str], images: Mapping[str, str], instruction: str) -> Sample:
    index = _present(row.get("index"))
    if index is None:
        raise BadRecord("index", "missing")
    question = _present(row.get("question"))
    if question is None:
        raise BadRecord("question", "missing")
    options = {c: v for c in letters if (v := _present(row.get(c))) is not None}
    if len(options) < 2:
        raise BadRecord("A", f"a multiple-choice question needs at least two options, found {len(options)}")
    gaps = [c for c in letters[:len(options)] if c not in options]
    if gaps:  # options must run A, B, C... without holes, or the letters a model sees would not match
        raise BadRecord(gaps[0], "missing while a later option is present")
    answer = _present(row.get("answer"))
    if answer is not None:
        answer = answer.upper()
        if answer not in options:
            raise BadRecord("answer", f"{answer!r} is not one of the options {', '.join(options)}")
    image = _image(row.get("image") or "", images)
    hint = _present(row.get("hint"))
    text = "".join([f"Hint: {hint}\n" if hint else "", f"Question: {question}\nOptions:\n",
                    "".join(f"{c}. {v}\n" for c, v in options.items()), instruction])
    meta = {"task": "multiple-choice", "index": index, "question": question, "hint": hint, "options": options,
            "answer": answer, "l2_category": _present(row.get("l2-category")), "split": _present(row.get("split")),
            "origin": _present(row.get("source"))}
    return Sample.from_text(f"mmbench-{index}", text, (image,), kind="benign",
                            category=_present(row.get("category")) or "uncategorized", source="mmbench",
                            metadata=meta)


def _image(value: str, images: Mapping[str, str]) -> ImageRef:
    value = value.strip()
    if not value:
        raise BadRecord("image", "missing")
    if _is_reference(value):
        if value not in images:
            raise BadRecord("image", f"refers to row index {value}, which has no image of its own")
        value = images[value].strip()
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRecord("image", f"not valid base64: {exc}") from None
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            im.verify()
    except Exception as exc:  # PIL raises many types for corrupt data
        raise BadRecord("image", f"not a readable image: {type(exc).__name__}: {exc}") from None
    return ImageRef(data)


# --- scoring ------------------------------------------------------------------------------------------


def parse_choice(response: str, options: Sequence[str] | Mapping[str, str] = ("A", "B", "C", "D")) -> str | None:
    """The option letter a free-text answer chooses, or None when it cannot be told.

    In order: the whole answer is a letter ("B", "(B)", "**B**."); it announces one ("The answer is
    B", "Answer: (C)"); it opens with one ("B. A cat", "(B) cat"); exactly one option letter stands
    alone in it; exactly one option's text appears in it (given ``options`` as letter -> text). "I"
    before a lowercase word, and "A" opening a sentence before one, are read as English words.
    """
    letters = [str(c).upper() for c in options]
    texts = {str(k).upper(): str(v) for k, v in options.items()} if isinstance(options, Mapping) else {}
    s = (response or "").strip()
    if not s or not letters:
        return None
    cls = "[" + "".join(re.escape(c) for c in letters) + "]"
    m = re.fullmatch(rf"[\s*_(\[\"'`]*((?i:{cls}))[\s*_)\]\"'`.:,!]*", s)
    if m:
        return m.group(1).upper()
    for word in ("answer", "choice|option"):  # "Option A is wrong; the answer is B" chooses B
        for m in re.finditer(rf"(?i:{word})(?:\s+(?i:is|would be|should be|will be))?\s*[:\-]?\s*"
                             rf"[*_(\[\"'`]*((?i:{cls}))(?![A-Za-z0-9])", s):
            # a lowercase letter counts only when nothing follows it in the sentence: "answer: d", not
            # "the answer is a dog"
            if m.group(1).isupper() or re.match(r"[\s*_)\]\"'`]*(?:$|[.,;!\n])", s[m.end():]):
                return m.group(1).upper()
    m = re.match(rf"[\s*_(\[]*({cls})(?:[)\].:*]|\s+-)", s)
    if m:
        return m.group(1)
    found = set()
    for m in re.finditer(rf"(?<![A-Za-z0-9])({cls})(?![A-Za-z0-9'])", s):
        c, before, after = m.group(1), s[:m.start()], s[m.end():]
        word_next = re.match(r"\s+[a-z]", after) is not None
        sentence_start = re.search(r"(?:^|[.!?:\n]\s*)$", before) is not None
        if (c == "I" and word_next) or (c == "A" and word_next and sentence_start):
            continue  # the pronoun "I", or the article "A" opening a sentence
        found.add(c)
    if len(found) == 1:
        return found.pop()
    if texts:
        low = s.lower()
        hits = [c for c, t in texts.items()
                if t.strip() and re.search(rf"(?<![a-z0-9]){re.escape(t.strip().lower())}(?![a-z0-9])", low)]
        # "black cat" and "cat" both match "a black cat": keep only matches not inside another match
        hits = [c for c in hits if not any(o != c and texts[c].lower() in texts[o].lower() for o in hits)]
        if len(hits) == 1:
            return hits[0]
    return None


def mc_accuracy(responses: Sequence[str], answers: Sequence[str | None],
                options: Sequence[Sequence[str] | Mapping[str, str]] | None = None) -> dict[str, Any]:
    """Accuracy of free-text answers to multiple-choice questions, with a Wilson 95 % interval.

    ``options`` (per item: letters, or letter -> text from ``metadata["options"]``) lets an answer that
    names an option's text count; without it the letters A-D are assumed. Items whose answer is None
    (test splits) are skipped; answers that choose no letter count as wrong and as ``unparsed``.
    """
    from safeglass.stats import wilson_interval  # a leaf module: no import cycle, nothing heavy

    if len(responses) != len(answers) or (options is not None and len(options) != len(answers)):
        raise ValueError("mc_accuracy: responses, answers (and options) must have the same length")
    correct = unparsed = n = 0
    chosen: list[str | None] = []
    for i, (resp, ans) in enumerate(zip(responses, answers)):
        pick = parse_choice(resp, options[i] if options is not None else ("A", "B", "C", "D"))
        chosen.append(pick)
        if ans is None:
            continue
        n += 1
        unparsed += pick is None
        correct += pick is not None and pick == str(ans).strip().upper()
    lo, hi = wilson_interval(correct, n)
    return {"accuracy": correct / n if n else 0.0, "n": n, "correct": correct, "unparsed": unparsed,
            "skipped": len(answers) - n, "ci_low": lo, "ci_high": hi, "chosen": chosen}


def iter_answers(samples: Sequence[Sample], responses: Mapping[str, str]) -> Iterator[tuple[str, str | None, Any]]:
    """(response, answer, options) for the samples that have a response in ``responses`` (by sample id),
    ready for ``mc_accuracy(*zip(*iter_answers(...)))``."""
    for s in samples:
        if s.id in responses:
            yield responses[s.id], s.metadata.get("answer"), s.metadata.get("options") or ("A", "B", "C", "D")
