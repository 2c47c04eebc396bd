"""User data as real datasets ship it: ScienceQA-shaped folders (letter answers, a hint), other field names
(``--task-columns``), given splits kept (a user's test rows are never trained on) and no row in two splits."""

from __future__ import annotations

import json
import random

import pytest

from objectives import TaskDataError, get_task, load_task_file
from objectives.data_files import parse_task_columns
from objectives.task import SPLITS
from tiny_models import COLOURS, THINGS

LETTERS = "ABCDE"


def scienceqa_rows(n: int, *, seed: int, prefix: str = "") -> list[dict]:
    """Rows as MoLA's ScienceQA release holds them: question, choices, answer letter, hint (often empty)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        k = i % len(THINGS)
        choices = rng.sample([c for c in COLOURS if c != COLOURS[k]], rng.randint(1, 4)) + [COLOURS[k]]
        rng.shuffle(choices)
        rows.append({"question": f"{prefix}q{i} the colour of {THINGS[k]} is", "choices": choices,
                     "answer": LETTERS[choices.index(COLOURS[k])], "hint": "" if i % 3 else f"the {THINGS[k]}",
                     "subject": "colours", "image": None})
    return rows


def save_folder(path, splits: dict[str, list[dict]]):
    from datasets import Dataset, DatasetDict

    DatasetDict({name: Dataset.from_list(rows) for name, rows in splits.items()}).save_to_disk(str(path))
    return path


def expected_example(row: dict) -> tuple[str, tuple[str, ...], int]:
    """The prompt, choices and answer index a row must give, from the row itself (hint before question)."""
    context = f"Context: {row['hint']}\n" if row["hint"] else ""
    return (f"{context}Question: {row['question']}\nAnswer:", tuple(f" {c}" for c in row["choices"]),
            LETTERS.index(row["answer"]))


def test_scienceqa_folder_letters_and_hint(tmp_path):
    splits = {s: scienceqa_rows(12, seed=i, prefix=s) for i, s in enumerate(SPLITS)}
    task = load_task_file(save_folder(tmp_path / "scienceqa", splits))
    assert task.kind == "multiple_choice"
    for split, rows in splits.items():
        got = task.split(split)
        assert [e.id for e in got] == [f"scienceqa:{split} row {i}" for i in range(1, 13)]  # kept as given
        assert [(e.prompt, e.choices, e.answer) for e in got] == [expected_example(r) for r in rows]
    assert "splits as given" in task.description


@pytest.mark.parametrize("answer, index", [("B", 1), ("2", 1), (2, 2), ("green", 1), (" C ", 2)])
def test_answer_as_letter_label_index_or_text(tmp_path, answer, index):
    rows = [{"question": f"q{i}", "choices": ["red", "green", "blue"], "answer": answer} for i in range(10)]
    path = tmp_path / "mc.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = load_task_file(path)
    assert {e.answer for s in SPLITS for e in task.split(s)} == {index}


def test_bad_and_ambiguous_answers_are_one_line_per_row(tmp_path):
    rows = [{"question": "ok", "choices": ["1", "2", "3"], "answer": "2"},  # text and label agree: choice 2
            {"question": "q", "choices": ["2", "1"], "answer": "1"},  # text of choice 2, label of choice 1
            {"question": "q", "choices": ["red", "blue"], "answer": "C"},  # only two choices
            {"question": "q", "choices": ["red", "blue"], "answer": "0"},  # labels count from 1
            {"question": "q", "choices": ["red", "blue"], "answer": "pink"}]
    path = tmp_path / "mc.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(TaskDataError) as info:
        load_task_file(path)
    problems = dict(info.value.problems)
    assert sorted(problems) == ["line 2", "line 3", "line 4", "line 5"]
    assert "ambiguous" in problems["line 2"]
    assert "out of range for 2 choices" in problems["line 3"] and "count from the first" in problems["line 4"]
    assert "'pink' is not among the choices" in problems["line 5"]
    assert all("\n" not in p for p in problems.values())


def test_task_columns_map_other_field_names(tmp_path):
    rows = [{"stem": r["question"], "options": r["choices"], "key": r["answer"], "passage_text": r["hint"]}
            for r in scienceqa_rows(20, seed=3)]
    path = tmp_path / "renamed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    columns = "question=stem,choices=options,answer=key,context=passage_text"
    task = get_task(str(path), columns=columns)
    got = {e.id: (e.prompt, e.choices, e.answer) for s in SPLITS for e in task.split(s)}
    for i, r in enumerate(scienceqa_rows(20, seed=3)):
        assert got[f"renamed.jsonl:line {i + 1}"] == expected_example(r)
    with pytest.raises(TaskDataError, match="expected"):
        get_task(str(path))  # without the mapping the fields are unknown
    with pytest.raises(ValueError, match="built-in task 'analogy' has its own"):
        get_task("analogy", columns=columns)


@pytest.mark.parametrize("text, words", [
    ("question", "needs a field name as question=NAME"), ("prompt=stem", "role must be one of"),
    ("answer=a,answer=b", "answer is given twice"), ("choices=", "needs a field name"),
])
def test_bad_task_columns_name_the_piece(text, words):
    with pytest.raises(ValueError, match=words):
        parse_task_columns(text)


def test_rows_repeated_across_splits_are_dropped_from_the_later_split(tmp_path):
    train = scienceqa_rows(20, seed=0, prefix="train")
    validation = scienceqa_rows(10, seed=1, prefix="val")
    test = scienceqa_rows(10, seed=2, prefix="test")
    repeat = dict(train[4], choices=list(reversed(train[4]["choices"])))  # same prompt and answer, other order
    repeat["answer"] = LETTERS[repeat["choices"].index(train[4]["choices"][LETTERS.index(train[4]["answer"])])]
    validation += [train[0], train[1], repeat]
    test += [train[2], validation[3]]
    task = load_task_file(save_folder(tmp_path / "leaky", {"train": train, "validation": validation, "test": test}))
    assert (len(task.train), len(task.validation), len(task.test)) == (20, 10, 10)
    seen = set()
    for split in SPLITS:
        keys = {(e.prompt, e.choices[e.answer]) for e in task.split(split)}
        assert not keys & seen
        seen |= keys
    assert "dropped 3 validation, 2 test row(s) repeating an earlier split's row" in task.description


def test_train_and_test_only_keeps_test_and_carves_validation_from_train(tmp_path):
    splits = {"train": scienceqa_rows(40, seed=0, prefix="train"), "test": scienceqa_rows(15, seed=1, prefix="test")}
    task = load_task_file(save_folder(tmp_path / "two", splits), seed=5)
    assert [e.id for e in task.test] == [f"two:test row {i}" for i in range(1, 16)]
    train_ids = {e.id for e in task.train} | {e.id for e in task.validation}
    assert train_ids == {f"two:train row {i}" for i in range(1, 41)}
    assert len(task.validation) == round(40 * 0.2 / 0.8)  # validation's share of train + validation
    assert "validation carved from train by seed 5, train, test as given" in task.description
    again = load_task_file(tmp_path / "two", seed=6)
    assert {e.id for e in again.validation} != {e.id for e in task.validation}  # the seed cuts it


def test_dev_split_is_validation(tmp_path):
    splits = {"train": scienceqa_rows(12, seed=0, prefix="t"), "dev": scienceqa_rows(6, seed=1, prefix="d"),
              "test": scienceqa_rows(6, seed=2, prefix="x")}
    task = load_task_file(save_folder(tmp_path / "d", splits))
    assert [e.id for e in task.validation] == [f"d:dev row {i}" for i in range(1, 7)]


def test_search_runs_on_a_scienceqa_shaped_folder(tmp_path, tiny_model_dir):
    import optuna

    from search.run import main
    from search_cli import search_args

    splits = {s: scienceqa_rows(16, seed=i, prefix=f"q{i}") for i, s in enumerate(SPLITS)}
    folder = save_folder(tmp_path / "scienceqa", splits)
    assert main(search_args(folder, tiny_model_dir, tmp_path / "out", "--budget", "1", fidelity=1)) == 0
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'out' / 's' / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"]


def test_search_refuses_bad_task_columns_in_one_line(capsys):
    from search.run import main

    assert main(["--budget", "1", "--task-columns", "prompt=stem"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("search.run: --task-columns: ") and "'prompt'" in err
