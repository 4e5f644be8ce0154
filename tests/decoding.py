"""Comparing decoded ids across batch shapes (tests' helper)."""

import torch


def same_up_to_a_tie(
    model, prompt: list[int], got: list[int], expected: list[int], eos: int, tolerance: float
) -> bool:
    """Equal, or equal until a step where both tokens' logits tie within `tolerance` (relative):
    a padded batch sums in another order than one sequence alone, and dynamic int8 quantizes
    activations with a scale taken over the whole batch, either of which may flip a near-tied
    argmax there (and every later token with it). A real divergence has a clear winner."""
    if got == expected:
        return True
    i = next(i for i in range(len(got) + 1) if got[i : i + 1] != expected[i : i + 1])
    ours, theirs = (seq[i] if i < len(seq) else eos for seq in (got, expected))
    with torch.no_grad():
        logits = model(torch.tensor([prompt + got[:i]])).logits[0, -1].float()
    gap = abs(float(logits[ours] - logits[theirs]))
    assert gap < tolerance * max(1.0, float(logits.abs().max())), (i, gap, got, expected)
    return True
