"""Shared fixtures: tiny in-code models (see tiny_models.py)."""

import pytest

from tiny_models import tiny_llama


@pytest.fixture
def llama():
    return tiny_llama()
