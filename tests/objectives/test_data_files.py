import json

import pytest

from objectives import TaskDataError, evaluate, get_task, load_task_file
from objectives.task import SPLITS


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _all(task):
    return {e.id: e for s in SPLITS for e in task.split(s)}


def test_classification_jsonl_round_trips_every_row_into_one_split(tmp_path):
    rows = [{"text": f"item number {i} is {'good' if i % 2 else 'bad'}", "label": "good" if i % 2 else "bad"}
            for i in range(30)]
    task = get_task(str(_write_jsonl(tmp_path / "reviews.jsonl", rows)), seed=1)
    assert task.kind == "classification" and task.name == "reviews"
    examples = _all(task)
    assert sorted(examples) == sorted(f"reviews.jsonl:line {i + 1}" for i in range(30))
    for i, row in enumerate(rows):
        e = examples[f"reviews.jsonl:line {i + 1}"]
        assert e.prompt == f"{row['text']}\nLabel:"
        assert e.choices == (" bad", " good") and e.choices[e.answer] == " " + row["label"]
    assert [e.id for e in task.test] == [e.id for e in load_task_file(tmp_path / "reviews.jsonl", seed=1).test]


def test_multiple_choice_jsonl_accepts_answer_text_or_index(tmp_path):
    rows = [{"question": f"q{i}?", "choices": ["red", "green", "blue"], "answer": ["green", 2][i % 2]}
            for i in range(10)]
    task = load_task_file(_write_jsonl(tmp_path / "mc.jsonl", rows))
    for i in range(len(rows)):
        e = _all(task)[f"mc.jsonl:line {i + 1}"]
        assert e.prompt == f"Question: q{i}?\nAnswer:" and e.choices == (" red", " green", " blue")
        assert e.answer == (1 if i % 2 == 0 else 2)


def test_csv_choices_as_json_list_or_pipes(tmp_path):
    path = tmp_path / "mc.csv"
    lines = ["question,choices,answer"]
    lines += [f'q{i},"[""a"", ""b""]",b' for i in range(5)] + [f"p{i},x|y|z,z" for i in range(5)]
    path.write_text("\n".join(lines) + "\n")
    examples = _all(load_task_file(path))
    assert examples["mc.csv:line 2"].choices == (" a", " b") and examples["mc.csv:line 2"].answer == 1
    assert examples["mc.csv:line 11"].choices == (" x", " y", " z") and examples["mc.csv:line 11"].answer == 2


def test_malformed_rows_are_all_reported_with_their_line_numbers(tmp_path):
    good = {"question": "ok?", "choices": ["yes", "no"], "answer": "yes"}
    rows = [good, {"question": "q", "choices": ["yes", "no"]}, good,
            {"question": "q", "choices": ["yes", "no"], "answer": "maybe"},
            {"question": " ", "choices": ["yes", "no"], "answer": "no"}, good]
    path = _write_jsonl(tmp_path / "bad.jsonl", rows)
    with path.open("a") as f:
        f.write("{not json\n")
    with pytest.raises(TaskDataError) as info:
        load_task_file(path)
    problems = dict(info.value.problems)
    assert sorted(problems) == ["line 2", "line 4", "line 5", "line 7"]
    assert problems["line 2"] == "missing answer"
    assert "'maybe' is not among the choices" in problems["line 4"]
    assert "empty or missing question" in problems["line 5"]
    assert "invalid JSON" in problems["line 7"]
    assert "bad.jsonl: 4 malformed row(s)" in str(info.value)


def test_empty_text_in_classification_csv_is_reported(tmp_path):
    path = tmp_path / "cls.csv"
    path.write_text("text,label\nfine,a\n,b\nalso fine,\n")
    with pytest.raises(TaskDataError) as info:
        load_task_file(path)
    assert [where for where, _ in info.value.problems] == ["line 3", "line 4"]


def test_malformed_data_stops_evaluate_before_any_model_is_loaded(tmp_path, monkeypatch):
    import objectives.evaluation as evaluate_module
    from hilo_core import MoLoRAConfig

    def no_model(name):
        raise AssertionError("the model was loaded although the data is malformed")

    monkeypatch.setattr(evaluate_module, "base_model", no_model)
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"text": "", "label": "x"}])
    with pytest.raises(TaskDataError, match="line 1: empty or missing text"):
        evaluate(MoLoRAConfig.uniform(2, 1, 2), str(path), evaluate_module.Fidelity(steps=1))


def test_datasets_folder_with_class_labels_and_given_splits(tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    data = {"text": [f"text {i}" for i in range(12)], "label": [i % 2 for i in range(12)]}
    Dataset.from_dict(data, features=features).save_to_disk(str(tmp_path / "flat"))
    flat = load_task_file(tmp_path / "flat")
    assert flat.kind == "classification" and _all(flat)["flat:row 2"].choices == (" neg", " pos")
    assert _all(flat)["flat:row 2"].answer == 1

    split_data = DatasetDict({s: Dataset.from_dict({**data, "text": [f"{s} text {i}" for i in range(12)]},
                                                    features=features) for s in SPLITS})
    split_data.save_to_disk(str(tmp_path / "split"))
    given = load_task_file(tmp_path / "split")
    assert [e.id for e in given.validation] == [f"split:validation row {i}" for i in range(1, 13)]


def test_unsupported_file_type_is_an_error(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("hello")
    with pytest.raises(ValueError, match="expected a .jsonl, .csv or a datasets folder"):
        load_task_file(path)
