"""Fixtures of the reliability tests: the tiny model and task of tests/search, a model whose every
training loss is NaN, the search CLI as a subprocess, and a real PostgreSQL server on loopback."""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tiny_models import COLOUR_WORDS, save_tiny_causal_lm

@pytest.fixture(scope="session")
def nan_model_dir(tmp_path_factory):
    """The tiny model with NaN in its final norm: every logit, so every training loss, is NaN.

    The adapted projections (and so the HT-SR alphas the search computes first) stay finite.
    """
    import torch
    from transformers import AutoModelForCausalLM

    folder = save_tiny_causal_lm(tmp_path_factory.mktemp("model") / "nan", COLOUR_WORDS, n_layers=4)
    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        model.model.norm.weight[0] = float("nan")
    model.save_pretrained(folder)
    return folder


def postgres_bin() -> Path | None:
    """The folder holding ``initdb`` and ``postgres``: PATH first, then Debian's /usr/lib/postgresql/<v>/bin."""
    found = shutil.which("initdb")
    candidates = ([Path(found).resolve().parent] if found else []) + \
        [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server (trust auth, loopback only, fsync off) with database ``hilo``.

    initdb refuses to run as root, so as root the server runs as the ``postgres`` (or ``nobody``) user.
    """
    folder = postgres_bin()
    try:
        import psycopg2
    except ImportError:
        psycopg2 = None
    missing = None
    if folder is None:
        missing = ("PostgreSQL server binaries (initdb, postgres) not found on PATH or in"
                   " /usr/lib/postgresql/*/bin; install Debian's postgresql package")
    elif psycopg2 is None:
        missing = "the PostgreSQL driver psycopg2 is missing; pip install -e '.[dev]'"
    if missing:
        if os.environ.get("CI"):  # CI installs both (.ci/run, the dev extra): missing there is a failure
            pytest.fail(missing)
        pytest.skip(missing)
    base = Path(tempfile.mkdtemp(prefix="hilo-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
        if user is None:
            pytest.fail("running as root without a 'postgres' or 'nobody' user to run the server as")
        shutil.chown(base, user)
        prefix = ["runuser", "-u", user, "--"]
    data, port = base / "data", _free_port()
    subprocess.run([*prefix, folder / "initdb", "-D", data, "-A", "trust", "-U", "hilo", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True)
    server = subprocess.Popen([*prefix, folder / "postgres", "-D", data, "-h", "127.0.0.1", "-p", str(port),
                               "-k", base, "-F"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = psycopg2.connect(host="127.0.0.1", port=port, user="hilo", dbname="postgres")
            break
        except psycopg2.OperationalError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"postgres did not start: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
    conn.autocommit = True
    conn.cursor().execute("CREATE DATABASE hilo")
    conn.close()
    yield f"postgresql+psycopg2://hilo@127.0.0.1:{port}/hilo"
    subprocess.run([*prefix, folder / "pg_ctl", "stop", "-D", data, "-m", "fast"], capture_output=True)
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()
    shutil.rmtree(base, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
