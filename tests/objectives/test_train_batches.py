"""Length-grouped training batches: seeded, every example once per epoch, less padding than plain shuffling."""

import itertools
import random

import pytest
import torch

from objectives.train import GROUP_BATCHES, length_batches


def _epochs(lengths, batch_size, seed, n_epochs):
    """The batches of the first ``n_epochs`` epochs, grouped per epoch by counting examples."""
    stream = length_batches(lengths, batch_size, seed)
    epochs = []
    for _ in range(n_epochs):
        epoch, seen = [], 0
        while seen < len(lengths):
            batch = next(stream)
            epoch.append(batch)
            seen += len(batch)
        epochs.append(epoch)
    return epochs


@pytest.mark.parametrize("n,batch_size", [(400, 8), (37, 8), (5, 8), (130, 3)])
def test_every_example_once_per_epoch_and_full_batches(n, batch_size):
    lengths = [random.Random(n).randint(5, 60) for _ in range(n)]
    for epoch in _epochs(lengths, batch_size, seed=3, n_epochs=3):
        assert sorted(itertools.chain(*epoch)) == list(range(n))
        assert all(1 <= len(b) <= batch_size for b in epoch)
        assert sum(len(b) < batch_size for b in epoch) <= 1  # only the last group may leave a short batch


def test_same_seed_same_batches_other_seed_other_batches():
    lengths = [random.Random(1).randint(5, 60) for _ in range(100)]
    a = list(itertools.islice(length_batches(lengths, 8, seed=0), 40))
    assert a == list(itertools.islice(length_batches(lengths, 8, seed=0), 40))
    assert a != list(itertools.islice(length_batches(lengths, 8, seed=1), 40))


def test_batches_pad_less_than_plain_shuffled_batches():
    rng = random.Random(0)
    lengths = [rng.choice([8, 12, 40, 90]) + rng.randint(0, 5) for _ in range(800)]

    def padding(batches):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    grouped = list(itertools.islice(length_batches(lengths, 8, seed=0), 100))
    order = torch.randperm(800, generator=torch.Generator().manual_seed(0)).tolist()
    plain = [order[i:i + 8] for i in range(0, 800, 8)]
    assert padding(grouped) < padding(plain) / 3


def test_groups_still_mix_the_epoch():
    """Batches are drawn from groups of GROUP_BATCHES batches: the first batches are not all the shortest."""
    lengths = list(range(400))
    first = list(itertools.islice(length_batches(lengths, 8, seed=0), 10))
    assert max(max(b) for b in first) > 8 * GROUP_BATCHES * 2
