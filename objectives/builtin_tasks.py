"""Built-in tasks on real labelled data shipped inside the ``gensim`` wheel (read, never imported).

``analogy``: the Google word-analogy questions (Mikolov et al. 2013) as 4-way multiple choice;
``polarity``: Pang & Lee movie-review sentences; ``newsgroups``: mini 20 Newsgroups, two classes.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import pickle
import random
import zlib
from pathlib import Path
from typing import Sequence

from .task import Example, Task, stratified_split

_DATA_PACKAGE = "gensim"
_INSTALL_HINT = "pip install gensim==4.4.0  (hilo reads its test data files; it never imports gensim)"


def gensim_test_data(name: str) -> Path:
    """Path of a file in gensim's ``test/test_data`` folder, found without importing gensim."""
    spec = importlib.util.find_spec(_DATA_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the built-in tasks read data shipped by the package gensim: {_INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "test" / "test_data" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with: {_INSTALL_HINT}")
    return path


def _examples(rows: list[Example], indices: list[int]) -> tuple[Example, ...]:
    return tuple(rows[i] for i in indices)


def analogy(*, seed: int = 0, n_train: int = 400, n_validation: int = 200, n_test: int = 200,
            sections: Sequence[str] | None = None,
            fractions: Sequence[float] = (0.4, 0.3, 0.3)) -> Task:
    """"Athens is to Greece as Baghdad is to" -> " Iraq" among the answer and 3 same-section distractors.

    Splits are cut over *target pairs* (c, d), stratified by section, so no test question asks for a
    pair that training taught; each split then samples its questions (premises a:b vary) from its pairs.
    """
    for name, n in (("n_train", n_train), ("n_validation", n_validation), ("n_test", n_test)):
        if not (isinstance(n, int) and n > 0):
            raise ValueError(f"analogy: {name} must be a positive integer, got {n!r}")
    questions: list[tuple[str, str, str, str, str, int]] = []
    section = ""
    for lineno, line in enumerate(gensim_test_data("questions-words.txt").read_text(encoding="ascii").splitlines(), 1):
        if line.startswith(":"):
            section = line[1:].strip()
        elif line.strip():
            a, b, c, d = line.split()
            questions.append((section, a, b, c, d, lineno))
    known = sorted({q[0] for q in questions})
    if sections is not None:
        unknown = sorted(set(sections) - set(known))
        if unknown:
            raise ValueError(f"analogy: unknown sections {unknown}; available: {known}")
        questions = [q for q in questions if q[0] in set(sections)]
    answers: dict[str, list[str]] = {}
    for q in questions:
        answers.setdefault(q[0], [])
        if q[4] not in answers[q[0]]:
            answers[q[0]].append(q[4])

    # A pair may recur across sections (Athens:Greece is in two): its first section is its stratum.
    first_section: dict[tuple[str, str], str] = {}
    for q in questions:
        first_section.setdefault((q[3], q[4]), q[0])
    pairs = sorted(first_section)
    pair_parts = stratified_split([first_section[p] for p in pairs], fractions, seed=seed)
    rng = random.Random(seed)
    splits = []
    for part, n in zip(pair_parts, (n_train, n_validation, n_test)):
        chosen = {pairs[i] for i in part}
        pool = [q for q in questions if (q[3], q[4]) in chosen]
        rows = []
        for sec, a, b, c, d, lineno in rng.sample(pool, min(n, len(pool))):
            others = [w for w in answers[sec] if w not in (a, b, c, d)]
            choices = rng.sample(others, 3) + [d]
            rng.shuffle(choices)
            rows.append(Example(prompt=f"{a} is to {b} as {c} is to", choices=tuple(f" {w}" for w in choices),
                                answer=choices.index(d), id=f"questions-words.txt:{lineno}"))
        splits.append(tuple(rows))
    return Task(name="analogy", kind="multiple_choice", train=splits[0], validation=splits[1], test=splits[2],
                description="Google word analogies as 4-way multiple choice (gensim test data)")


def _classification(name: str, texts: list[str], labels: list[int], verbalisers: tuple[str, ...],
                    template: str, source: str, *, seed: int, fractions: Sequence[float],
                    description: str) -> Task:
    rows = [Example(prompt=template.format(text=t), choices=verbalisers, answer=y, id=f"{source}:{i + 1}")
            for i, (t, y) in enumerate(zip(texts, labels))]
    parts = stratified_split(labels, fractions, seed=seed)
    return Task(name=name, kind="classification", train=_examples(rows, parts[0]),
                validation=_examples(rows, parts[1]), test=_examples(rows, parts[2]), description=description)


def polarity(*, seed: int = 0, fractions: Sequence[float] = (0.5, 0.25, 0.25)) -> Task:
    """Pang & Lee sentence polarity (200 sentences), verbalisers " negative" / " positive"."""
    texts, labels = [], []
    # The file is Windows-1252 (0x97 em dashes, 0xe9 accents), not UTF-8.
    for line in gensim_test_data("pang_lee_polarity.cor").read_bytes().decode("cp1252").splitlines():
        if line.strip():
            tag, text = line.split(" ", 1)
            texts.append(text.strip())
            labels.append(("__label__neg", "__label__pos").index(tag))
    return _classification("polarity", texts, labels, (" negative", " positive"),
                           "Review: {text}\nSentiment:", "pang_lee_polarity.cor", seed=seed, fractions=fractions,
                           description="Pang & Lee movie-review sentence polarity (gensim test data)")


class _Bunch(dict):
    """Stand-in for the scikit-learn ``Bunch`` the newsgroups pickle was written with."""

    def __setstate__(self, state: dict) -> None:
        self.update(state)


class _NewsgroupsUnpickler(pickle.Unpickler):
    """Loads only the classes this one Python-2 pickle needs; anything else is refused."""

    _ALLOWED = {
        ("copy_reg", "_reconstructor"): ("copyreg", "_reconstructor"),
        ("__builtin__", "dict"): ("builtins", "dict"),
        ("__builtin__", "object"): ("builtins", "object"),
        ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"): ("numpy", "ndarray"),
        ("numpy", "dtype"): ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle protocol
        if name == "Bunch" and module.startswith("sklearn."):
            return _Bunch
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"mini_newsgroup: refusing to load {module}.{name}")
        target_module, target_name = self._ALLOWED[(module, name)]
        if target_module == "numpy._core.multiarray" and importlib.util.find_spec("numpy._core") is None:
            target_module = "numpy.core.multiarray"  # numpy < 2
        return getattr(importlib.import_module(target_module), target_name)


def _strip_headers(post: str, names: tuple[str, ...], max_chars: int) -> str:
    """Subject plus body, without what names the label outright: the other headers (``Newsgroups:``,
    ``Path:``), quoted ``Newsgroups:`` lines in the body, and the group names themselves."""
    head, _, body = post.partition("\n\n")
    subject = next((h[len("Subject:"):].strip() for h in head.splitlines() if h.startswith("Subject:")), "")
    text = f"Subject: {subject}\n" + "\n".join(line for line in body.strip().splitlines()
                                              if "Newsgroups:" not in line)
    for name in names:
        text = text.replace(name, "[group]")
    return text[:max_chars]


def newsgroups(*, seed: int = 0, fractions: Sequence[float] = (0.5, 0.25, 0.25), max_chars: int = 600) -> Task:
    """Mini 20 Newsgroups (alt.atheism vs sci.space, 200 posts), headers stripped, verbalisers from names."""
    raw = zlib.decompress(gensim_test_data("mini_newsgroup").read_bytes())
    bunch = _NewsgroupsUnpickler(io.BytesIO(raw), encoding="latin1").load()
    names = tuple(str(n) for n in bunch["target_names"])
    texts = [_strip_headers(str(p), names, max_chars) for p in bunch["data"]]
    labels = [int(y) for y in bunch["target"]]
    verbalisers = tuple(" " + n.rsplit(".", 1)[-1] for n in names)
    return _classification("newsgroups", texts, labels, verbalisers, "{text}\nTopic:", "mini_newsgroup",
                           seed=seed, fractions=fractions,
                           description=f"mini 20 Newsgroups {' vs '.join(names)} (gensim test data)")
