import pytest

from objectives import TASKS, Task, get_task
from objectives.builtin_tasks import gensim_test_data
from objectives.task import SPLITS, stratified_split


def _analogy_lines():
    """{line number: (section, a, b, c, d)} straight from the file: the reference for the task."""
    section, rows = "", {}
    for lineno, line in enumerate(gensim_test_data("questions-words.txt").read_text().splitlines(), 1):
        if line.startswith(":"):
            section = line[1:].strip()
        else:
            rows[lineno] = (section, *line.split())
    return rows


def test_registry_lists_the_builtin_tasks_with_analogy_first():
    assert list(TASKS) == ["analogy", "polarity", "newsgroups", "csqa", "obqa", "arc-e", "arc-c", "piqa", "boolq"]
    with pytest.raises(ValueError, match="neither a built-in task"):
        get_task("no-such-task")


def test_analogy_questions_match_the_file_with_same_section_distractors():
    lines = _analogy_lines()
    answers_by_section = {}
    for sec, _, _, _, d in lines.values():
        answers_by_section.setdefault(sec, set()).add(d)
    task = get_task("analogy")
    assert (len(task.train), len(task.validation), len(task.test)) == (400, 200, 200)
    assert task.kind == "multiple_choice"
    for e in task.train + task.validation + task.test:
        sec, a, b, c, d = lines[int(e.id.rsplit(":", 1)[1])]
        assert e.prompt == f"{a} is to {b} as {c} is to"
        assert e.choices[e.answer] == f" {d}"
        assert len(set(e.choices)) == 4
        assert {ch.strip() for ch in e.choices} <= answers_by_section[sec]
    positions = [e.answer for e in task.test]
    assert len(set(positions)) == 4  # the answer is not always in the same slot


def test_analogy_splits_are_disjoint_down_to_the_target_pair():
    lines = _analogy_lines()
    task = get_task("analogy")
    pairs = {s: {lines[int(e.id.rsplit(":", 1)[1])][3:] for e in task.split(s)} for s in SPLITS}
    assert not pairs["train"] & pairs["test"]
    assert not pairs["train"] & pairs["validation"]
    assert not pairs["validation"] & pairs["test"]


@pytest.mark.parametrize("name", list(TASKS))
def test_splits_are_deterministic_per_seed_and_disjoint(name):
    first, again, other = get_task(name, seed=3), TASKS[name](seed=3), get_task(name, seed=4)
    assert first is get_task(name, seed=3)  # built once per process
    ids = {s: [e.id for e in first.split(s)] for s in SPLITS}
    assert ids == {s: [e.id for e in again.split(s)] for s in SPLITS}
    assert ids != {s: [e.id for e in other.split(s)] for s in SPLITS}
    assert first.train == again.train  # prompts, choices and answers too
    all_ids = sum(ids.values(), [])
    assert len(all_ids) == len(set(all_ids))


@pytest.mark.parametrize("name, labels", [("polarity", (" negative", " positive")),
                                          ("newsgroups", (" atheism", " space"))])
def test_classification_tasks_are_balanced_and_use_verbalisers(name, labels):
    task = get_task(name)
    assert task.kind == "classification"
    assert (len(task.train), len(task.validation), len(task.test)) == (100, 50, 50)
    for split in SPLITS:
        examples = task.split(split)
        assert all(e.choices == labels for e in examples)
        assert sum(e.answer for e in examples) == len(examples) // 2  # stratified: half of each label


def test_newsgroups_prompts_carry_no_header_naming_the_label():
    task = get_task("newsgroups")
    for e in task.train + task.validation + task.test:
        assert "Newsgroups:" not in e.prompt and "Path:" not in e.prompt
        assert "alt.atheism" not in e.prompt and "sci.space" not in e.prompt
        assert e.prompt.startswith("Subject:") and e.prompt.endswith("\nTopic:")


def test_stratified_split_keeps_every_index_once_and_each_stratum_in_proportion():
    strata = ["a"] * 40 + ["b"] * 20
    train, val, test = stratified_split(strata, (0.5, 0.25, 0.25), seed=0)
    assert sorted(train + val + test) == list(range(60))
    assert sum(strata[i] == "a" for i in test) == 10 and sum(strata[i] == "b" for i in test) == 5
    with pytest.raises(ValueError, match="fractions must be three positive shares"):
        stratified_split(strata, (0.5, 0.5), seed=0)


def test_task_rejects_an_empty_split():
    from objectives import Example

    e = Example(prompt="q", choices=(" a", " b"), answer=0, id="x")
    with pytest.raises(ValueError, match="the test split is empty"):
        Task(name="t", kind="classification", train=(e,), validation=(e,), test=())
