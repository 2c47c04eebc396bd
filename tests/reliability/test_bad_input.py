"""Bad input across the CLIs: one line naming the problem on stderr, exit code 2, no traceback, and an
existing study left byte for byte as it was."""

import hashlib
import sqlite3

import pytest

from search.run import main

from search_cli import cli, search_args

SPACE_FILES = {
    "yaml-syntax": ("groups: [1, 2\n", "cannot read space file"),
    "unknown-key": ("colour: red\n", "unknown keys ['colour']"),
    "bad-value": ("n_experts: [0, 2]\n", "n_experts: values must be positive integers"),
    "not-a-mapping": ("- 1\n- 2\n", "a space file must hold a mapping"),
    "bad-router": ("routers: {topk: {top_k: [1, 1]}}\n", "duplicate values"),
}
DATA_FILES = {
    "broken.jsonl": ('{"question": "q0 the colour of sky is", "choices": ["red", "blue"], "answer": "blue"}\n'
                     '{"question": "q1 the colour of", \n', "line 2"),
    "bad-answer.jsonl": ('{"question": "q0 the colour of sky is", "choices": ["red", "blue"], "answer": "pink"}\n',
                         "line 1"),
    "no-label.csv": ("text,label\nthe sky,blue\nthe coal\n", "line 3"),
    "empty.jsonl": ("", "empty.jsonl"),
}


@pytest.fixture(scope="module")
def existing(task_file, tiny_model_dir, tmp_path_factory):
    """A finished two-trial study, and the digest of its SQLite file."""
    out = tmp_path_factory.mktemp("out")
    assert main(search_args(task_file, tiny_model_dir, out, "--budget", "2", fidelity=1)) == 0
    return out


def _digest(out_root):
    return hashlib.sha256((out_root / "s" / "study.db").read_bytes()).hexdigest()


def _case_args(case, tmp_path):
    """Extra search.run arguments and the message expected for each kind of bad input."""
    kind, _, name = case.partition(":")
    if kind == "space-file":
        text, message = SPACE_FILES[name]
        (tmp_path / "space.yaml").write_text(text)
        return ["--space", str(tmp_path / "space.yaml")], message
    if kind == "data-file":
        text, message = DATA_FILES[name]
        (tmp_path / name).write_text(text)
        return ["--task", str(tmp_path / name)], message
    return {
        "space": (["--space", "nonsense"], "--space nonsense"),
        "task": (["--task", "nonsense"], "--task"),
        "model": (["--model", str(tmp_path / "no-such-model")], "--model"),
        "scheme": (["--storage", "redis://localhost/0"], "--storage must be an RDB URL"),
        "budget0": (["--budget", "0"], "--budget must be a positive number of trials, got 0"),
        "budget-neg": (["--budget", "-3"], "--budget must be a positive number of trials, got -3"),
        "hours0": (["--budget-hours", "0"], "--budget-hours must be positive"),
        "objectives": (["--objectives", "accuracy"], "differ from the study's"),
        "fidelity": (["--fidelity", "2"], "a resumed study keeps its fidelity"),
        "study-name": (["--study", "../s"], "--study must be a plain name"),
        "workers": (["--workers", "0"], "--workers must be a positive integer"),
        "threads0": (["--threads", "0"], "--threads must be a positive integer, got 0"),
        "threads-ray": (["--threads", "2", "--backend", "ray"], "--threads applies to --backend optuna only"),
    }[kind]


CASES = ["space", "task", "model", "scheme", "budget0", "budget-neg", "hours0", "objectives", "fidelity",
         "study-name", "workers", "threads0", "threads-ray", *(f"space-file:{n}" for n in SPACE_FILES),
         *(f"data-file:{n}" for n in DATA_FILES)]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_one_line_exit_2_study_untouched(case, existing, task_file, tiny_model_dir, tmp_path, capsys):
    before = _digest(existing)
    extra, message = _case_args(case, tmp_path)
    args = search_args(task_file, tiny_model_dir, existing, "--budget", "3", "--resume")
    # later options win in argparse, so extra replaces the defaults it names
    assert main(args + extra) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("search.run: ") and message in lines[0], captured.err
    assert "Traceback" not in captured.out + captured.err
    assert _digest(existing) == before
    assert sorted(p.name for p in (existing / "s").iterdir()) == ["study.db"]  # nothing half made


@pytest.mark.parametrize("damage", ["garbage", "garbled-pages", "garbled-trials", "foreign"])
def test_corrupt_sqlite_is_refused_and_kept(damage, existing, task_file, tiny_model_dir, tmp_path, capsys):
    db = tmp_path / "s" / "study.db"
    db.parent.mkdir()
    if damage == "garbage":
        db.write_bytes(b"not a database at all " * 200)
    elif damage == "garbled-pages":  # a real study with its first page intact and the rest overwritten
        data = bytearray((existing / "s" / "study.db").read_bytes())
        data[4096:] = b"\xff" * (len(data) - 4096)
        db.write_bytes(bytes(data))
    elif damage == "garbled-trials":  # only the pages of the trials table
        db.write_bytes((existing / "s" / "study.db").read_bytes())
        with sqlite3.connect(db) as conn:
            pages = [p for (p,) in conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'trials'")]
        data = bytearray(db.read_bytes())
        for page in pages:
            data[(page - 1) * 4096:page * 4096] = b"\x13" * 4096
        db.write_bytes(bytes(data))
    else:
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE notes (x TEXT)")
    before = db.read_bytes()
    assert main(search_args(task_file, tiny_model_dir, tmp_path, "--budget", "2", "--resume")) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"search.run: --storage sqlite:///{db}"), lines
    assert db.read_bytes() == before


@pytest.mark.slow
def test_every_cli_as_a_process(existing, tmp_path):
    """The real entry points: exit code 2, one line starting with the module's name, no traceback."""
    calls = [  # reports.build and reports.compare: tests/reports/test_build.py
        ("search.run", "--budget", "0", "--out-root", tmp_path),
        ("reports.export", "--study", "nope", "--to", "hilo", "--out-root", existing),
        ("hilo_core.proxies", "--model", tmp_path / "no-such-model", "--out", tmp_path / "p"),
    ]
    procs = [cli(*call) for call in calls]
    for call, proc in zip(calls, procs):
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 2, (call, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (call, err)
        assert err.startswith(call[0] + ": "), (call, err)
    assert not (tmp_path / "p").exists() and not any(tmp_path.glob("*/study.db"))


def test_proxies_bad_targets_exit_2(tiny_model_dir, tmp_path, capsys):
    from hilo_core.proxies.__main__ import main as proxies

    assert proxies(["--model", str(tiny_model_dir), "--targets", "no_proj", "--out", str(tmp_path / "p"),
                    "--no-cache"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hilo_core.proxies: ") and "no_proj" in err[0]


ARGPARSE_CASES = [  # (module, argv, words the one line must hold): usage errors argparse itself detects
    ("search.run", ["--budget", "ten"], "invalid int value: 'ten'"),
    ("search.run", ["--sampler", "grid"], "invalid choice: 'grid'"),
    ("search.run", ["--budget", "2", "--colour", "red"], "unrecognized arguments: --colour red"),
    ("hilo_core.proxies", ["--beta", "high"], "invalid float value: 'high'"),
    ("hilo_core", ["--gpu"], "unrecognized arguments: --gpu"),
    ("reports.build", [], "required: --study"),
    ("reports.export", ["--study", "s", "--to", "onnx"], "invalid choice: 'onnx'"),
    ("reports.compare", ["only-one"], "required: study_b"),
]


@pytest.mark.parametrize("module, argv, words", ARGPARSE_CASES, ids=[f"{m}:{' '.join(a)}" for m, a, _ in ARGPARSE_CASES])
def test_usage_errors_are_one_line(module, argv, words, capsys):
    """argparse's own errors (wrong type, choice, unknown or missing option) keep the one-line shape too."""
    import importlib

    entry = importlib.import_module(module)
    if not hasattr(entry, "main"):  # a package run with -m: its __main__ holds main
        entry = importlib.import_module(f"{module}.__main__")
    with pytest.raises(SystemExit) as stop:
        entry.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"{module}: ") and words in err, err
    assert "usage:" not in err
