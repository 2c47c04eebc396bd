import pytest
import torch

from objectives import Example
from objectives.scoring import accuracy, choice_scores
from objectives.sequences import answer_loss, encode

CPU = torch.device("cpu")

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
