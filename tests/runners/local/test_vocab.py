from __future__ import annotations

import torch

from rlbench_med.runners.local.loss import clipped_surrogate, k3_kl
from rlbench_med.runners.local.vocab import END, PAD, AnswerGrammar, AnswerVocab

TASKS = {"A": ("x", "y"), "B": ("p", "q", "r")}


def _vocab(max_labels: int = 2) -> AnswerVocab:
    return AnswerVocab.build(TASKS, reasoning_vocab=3, box_bins=4, max_labels=max_labels)


def test_token_layout_is_disjoint_and_decodes_back() -> None:
    vocab = _vocab()
    assert vocab.size == 2 + 3 + 5 + 16
    tokens = vocab.encode(1, ("r", "p"), (0, 1, 3, 2), [2])
    assert tokens == [4, vocab.label_token(1, "r"), vocab.label_token(1, "p"), END,
                      vocab.coord_token(0, 0), vocab.coord_token(1, 1), vocab.coord_token(2, 3), vocab.coord_token(3, 2)]
    assert vocab.decode(1, tokens) == (["r", "p"], (0, 1, 3, 2), 1)
    assert vocab.box_to_bins((0, 10, 99, 40), (100, 40)) == (0, 1, 3, 3)
    assert vocab.bins_to_box((3, 0, 0, 1), (100, 40)) == (12.5, 5.0, 87.5, 15.0)


def test_random_walks_through_the_grammar_only_emit_valid_answers() -> None:
    vocab = _vocab()
    grammar = AnswerGrammar(vocab, reasoning_tokens=1)
    gen = torch.Generator().manual_seed(0)
    b = 64
    task = torch.randint(2, (b,), generator=gen)
    grounded = torch.rand(b, generator=gen) < 0.5
    state = grammar.start(b)
    rows = []
    for _ in range(vocab.max_length(1, True)):
        allowed = grammar.allowed(state, task, grounded)
        assert bool(allowed.any(-1).all())
        token = torch.multinomial(allowed.float(), 1, generator=gen).squeeze(-1)
        rows.append(token)
        state = grammar.advance(state, token, grounded)
    assert bool(state.done.all())
    tokens = torch.stack(rows, 1)
    for i in range(b):
        seq = [t for t in tokens[i].tolist() if t != PAD]
        labels, bins, n_reasoning = vocab.decode(int(task[i]), seq)
        assert n_reasoning == 1
        assert 1 <= len(labels) <= 2 and len(set(labels)) == len(labels)
        assert set(labels) <= set(vocab.classes[int(task[i])])
        assert (bins is not None) == bool(grounded[i])
    allowed, mask = grammar.replay(tokens, task, grounded)
    assert bool(allowed.gather(-1, tokens[..., None]).all())
    assert torch.equal(mask.sum(1), (tokens != PAD).float().sum(1))


def test_clipped_surrogate_matches_hand_worked_numbers() -> None:
    old = torch.zeros(1, 3)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))
    adv = torch.tensor([[1.0, -2.0, 3.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    loss, frac = clipped_surrogate(logp, old, adv, mask, clip_low=0.2, clip_high=0.3)
    # token 0: min(1.5, 1.3) = 1.3; token 1: min(0.5 * -2, 0.8 * -2) = -1.6; token 2 masked.
    assert torch.isclose(loss, torch.tensor(-(1.3 - 1.6) / 2))
    assert torch.isclose(frac, torch.tensor(1.0))
    kl = k3_kl(torch.log(torch.tensor([0.5])), torch.log(torch.tensor([0.25])))
    assert torch.isclose(kl, torch.tensor(0.5 - torch.log(torch.tensor(0.5)).item() - 1))
