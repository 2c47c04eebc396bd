"""Scoring and the training loss against independent references: one sequence per choice, and the landed
padded scoring (one row per multi-token choice, the prompt repeated in each), kept here as the oracle."""

import pytest
import torch

from objectives import Example
from objectives.scoring import accuracy, choice_scores, pack
from objectives.sequences import answer_loss, encode

CPU = torch.device("cpu")


@torch.inference_mode()
def landed_choice_scores(model, encoded, *, pad_id, batch_rows=32):
    """The scoring this repository shipped before packing (commit 19d7c66), verbatim but for its helpers."""
    rows = []
    for q, e in enumerate(encoded):
        multi = [j for j, c in enumerate(e.choices) if len(c) > 1]
        if multi:
            rows.extend((q, j, k == 0, e.sequence(j), len(e.choices[j])) for k, j in enumerate(multi))
        else:
            rows.append((q, None, True, e.prompt, 0))
    rows.sort(key=lambda r: len(r[3]))
    sums = [[0.0] * len(e.choices) for e in encoded]
    model.eval()
    for start in range(0, len(rows), batch_rows):
        batch = rows[start:start + batch_rows]
        keep = max(r[4] for r in batch) + 1
        wanted = []
        for i, (q, choice, anchor, _, n_cont) in enumerate(batch):
            end_of_prompt = keep - 1 - n_cont
            e = encoded[q]
            if choice is not None:
                wanted += [(q, choice, i, end_of_prompt + k, t) for k, t in enumerate(e.choices[choice])]
            if anchor:
                wanted += [(q, j, i, end_of_prompt, c[0]) for j, c in enumerate(e.choices) if len(c) == 1]
        length = max(len(r[3]) for r in batch)
        ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), length), dtype=torch.long)
        for i, r in enumerate(batch):
            ids[i, length - len(r[3]):] = torch.tensor(r[3])
            mask[i, length - len(r[3]):] = 1
        logits = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                       logits_to_keep=keep).logits
        logp = logits[:, -keep:].float().log_softmax(-1)
        for q, j, i, pos, t in wanted:
            sums[q][j] += float(logp[i, pos, t])
    return [[total / len(c) for total, c in zip(row, e.choices)] for row, e in zip(sums, encoded)]

EXAMPLES = [
    Example(prompt="Athens is to Greece as Baghdad is to", choices=(" Iraq", " A", " Peru", " B"), answer=0, id="1"),
    Example(prompt="Pick one", choices=(" A", " B", " C"), answer=2, id="2"),  # one-token choices only
    Example(prompt="A much longer prompt that needs padding in a batch with short ones",
            choices=(" yes", " no"), answer=1, id="3"),
    Example(prompt="x", choices=(" Z", " long answer here"), answer=1, id="4"),
]


@torch.no_grad()
def _reference_scores(model, encoded):
    """One unpadded sequence per choice, full logits: what the batched path must reproduce."""
    scores = []
    for e in encoded:
        row = []
        for c in e.choices:
            logp = model(input_ids=torch.tensor([e.prompt + c])).logits[0].log_softmax(-1)
            row.append(float(torch.stack([logp[len(e.prompt) - 1 + i, t] for i, t in enumerate(c)]).mean()))
        scores.append(row)
    return scores


@pytest.mark.parametrize("batch_rows", [1, 3, 32])
def test_batched_scores_match_one_sequence_per_choice(tiny, batch_rows):
    model, tokenizer = tiny
    encoded = encode(tokenizer, EXAMPLES, max_length=128)
    assert len(encoded[0].choices[1]) == 1 and len(encoded[0].choices[0]) > 1  # both paths are exercised
    got = choice_scores(model, encoded, pad_id=tokenizer.pad_token_id, device=CPU, batch_rows=batch_rows)
    want = _reference_scores(model, encoded)
    for g, w in zip(got, want):
        assert g == pytest.approx(w, abs=1e-4)


def test_accuracy_is_the_share_of_questions_whose_answer_scores_highest(tiny):
    model, tokenizer = tiny
    encoded = encode(tokenizer, EXAMPLES, max_length=128)
    want = _reference_scores(model, encoded)
    hits = sum(max(range(len(s)), key=s.__getitem__) == e.answer for s, e in zip(want, encoded))
    assert accuracy(model, encoded, pad_id=tokenizer.pad_token_id, device=CPU) == hits / len(encoded)


def test_answer_loss_is_the_mean_token_loss_on_the_correct_choices(tiny):
    model, tokenizer = tiny
    encoded = encode(tokenizer, EXAMPLES, max_length=128)
    loss, tokens = answer_loss(model, encoded, pad_id=tokenizer.pad_token_id, device=CPU)
    nll, count = 0.0, 0
    with torch.no_grad():
        for e in encoded:
            answer = e.choices[e.answer]
            logp = model(input_ids=torch.tensor([e.sequence(e.answer)])).logits[0].log_softmax(-1)
            nll -= sum(float(logp[len(e.prompt) - 1 + i, t]) for i, t in enumerate(answer))
            count += len(answer)
    assert float(loss.detach()) == pytest.approx(nll / count, abs=1e-4)
    assert tokens == sum(len(e.sequence(e.answer)) for e in encoded)


def test_long_prompts_lose_their_first_tokens_and_oversized_choices_are_errors(tiny):
    _, tokenizer = tiny
    long = Example(prompt="x" * 50 + " END", choices=(" A", " BB"), answer=0, id="long")
    (e,) = encode(tokenizer, [long], max_length=10)
    assert len(e.prompt) + 2 == 10 and tokenizer.convert_ids_to_tokens(list(e.prompt))[-3:] == [" E", "N", "D"]
    with pytest.raises(ValueError, match="example .long.: choices must tokenise to 1..1 tokens"):
        encode(tokenizer, [long], max_length=2)


CLASSIFICATION = [  # one-token verbalisers after long and short prompts, as the classification tasks build them
    Example(prompt="Review: a tedious, overlong film.\nSentiment:", choices=(" negative", " positive"), answer=0,
            id="c1"),
    Example(prompt="Review: fine.\nSentiment:", choices=(" negative", " positive"), answer=1, id="c2"),
    Example(prompt="Topic of 'the goalie saved a penalty':", choices=(" sport", " space", " cars"), answer=0,
            id="c3"),
]


def _assert_scores_equal(got, want):
    """Equal to 1e-5, relative for scores beyond 1 nat in magnitude: float32 noise of different batchings."""
    assert [len(g) for g in got] == [len(w) for w in want]
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("kind,examples", [("multiple_choice", EXAMPLES), ("classification", CLASSIFICATION)])
@pytest.mark.parametrize("batch_rows", [1, 2, 32])
def test_packed_scores_equal_the_landed_padded_scoring(tiny, kind, examples, batch_rows):
    model, tokenizer = tiny
    encoded = encode(tokenizer, examples, max_length=128)
    got = choice_scores(model, encoded, pad_id=tokenizer.pad_token_id, device=CPU, batch_rows=batch_rows)
    _assert_scores_equal(got, landed_choice_scores(model, encoded, pad_id=tokenizer.pad_token_id))


@pytest.mark.slow
@pytest.mark.parametrize("task_name", ["analogy", "polarity", "csqa"])
def test_packed_scores_equal_the_landed_scoring_on_the_embedded_model(task_name):
    """Real tokenisation and model: multi-token choices of 1-5 tokens (analogy, csqa) and verbalisers (polarity)."""
    from objectives import base_model, get_task

    model, tokenizer = base_model("default")
    encoded = encode(tokenizer, get_task(task_name).validation[:12], max_length=128)
    got = choice_scores(model, encoded, pad_id=tokenizer.pad_token_id, device=CPU, batch_rows=5)
    _assert_scores_equal(got, landed_choice_scores(model, encoded, pad_id=tokenizer.pad_token_id))


def test_pack_reads_every_choice_token_once_from_the_position_before_it(tiny):
    _, tokenizer = tiny
    for e in encode(tokenizer, EXAMPLES + CLASSIFICATION, max_length=128):
        packed = pack(e)
        assert len(packed.ids) == len(e.prompt) + sum(len(c) - 1 for c in e.choices)
        assert [sum(r[0] == j for r in packed.reads) for j in range(len(e.choices))] == [len(c) for c in e.choices]
        prompt_end = len(e.prompt) - 1
        for j, offset, token in packed.reads:
            k = [r for r in packed.reads if r[0] == j].index((j, offset, token))  # token k of choice j
            assert token == e.choices[j][k]
            where = prompt_end + offset  # the packed position whose logits predict this token
            if k == 0:
                assert where == prompt_end
            else:  # the previous token of the same choice, at the position that continues the prompt
                assert packed.ids[where] == e.choices[j][k - 1] and packed.segment[where] == j + 1
                assert packed.position[where] == len(e.prompt) + k - 1


class _CountingTokenizer:
    """The tiny tokenizer, counting calls: encoding twice must cost one tokenisation."""

    def __init__(self, tokenizer):
        self.tokenizer, self.calls = tokenizer, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.tokenizer(*args, **kwargs)


def test_encode_is_cached_per_tokenizer_examples_and_max_length(tiny):
    _, tokenizer = tiny
    counting = _CountingTokenizer(tokenizer)
    first = encode(counting, EXAMPLES, max_length=128)
    assert counting.calls == 2  # prompts, then choices
    again = encode(counting, list(EXAMPLES), max_length=128)  # equal content, another container
    assert again == first and counting.calls == 2
    again.append(None)  # callers get their own list: the cached one is untouched
    assert encode(counting, EXAMPLES, max_length=128) == first
    encode(counting, EXAMPLES, max_length=64)
    encode(counting, EXAMPLES[:2], max_length=128)
    assert counting.calls == 6
    assert encode(_CountingTokenizer(tokenizer), EXAMPLES, max_length=128) == first  # another tokenizer object
