"""Torch threads per search worker (search.threads): the cores shared out, the user's OMP_NUM_THREADS kept."""

import pytest
import torch

from search.threads import threads_per_worker, torch_threads


@pytest.mark.parametrize("cores, workers, expected", [(2, 2, 1), (2, 3, 1), (16, 3, 5), (16, 4, 4), (1, 2, 1),
                                                      (8, 8, 1)])
def test_threads_divided_among_workers_at_least_one_each(cores, workers, expected):
    assert threads_per_worker(None, workers, env={}, threads=cores) == expected
    assert workers * threads_per_worker(None, workers, env={}, threads=cores) <= max(cores, workers)


def test_given_threads_win_and_otherwise_torch_is_left_alone():
    assert threads_per_worker(3, 2, env={"OMP_NUM_THREADS": "1"}, threads=16) == 3
    assert threads_per_worker(3, 1, env={}, threads=16) == 3
    assert threads_per_worker(None, 2, env={"OMP_NUM_THREADS": "4"}, threads=16) is None  # the user's choice
    assert threads_per_worker(None, 1, env={}, threads=16) is None  # one worker: nothing to share
    assert threads_per_worker(None, 2, env={"OMP_NUM_THREADS": ""}, threads=16) == 8  # set but empty: unset


def test_default_divides_this_process_threads():
    with torch_threads(4):
        assert threads_per_worker(None, 2, env={}) == 2


def test_torch_threads_sets_and_restores():
    before = torch.get_num_threads()
    other = 2 if before != 2 else 3
    with torch_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(other):
        raise RuntimeError("a failing search")
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
