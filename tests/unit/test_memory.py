import pytest

from tasks.core.memory import GIB, ModelShape, check_fits, estimate_memory, largest_batch_that_fits

pytestmark = pytest.mark.unit

# A 7B model: 32 layers, hidden 4096, vocabulary 32000.
SEVEN_B = ModelShape(
    parameters=7_000_000_000, trainable=7_000_000_000, layers=32, hidden=4096, vocab=32000
)
SEVEN_B_LORA = ModelShape(7_000_000_000, 4_000_000, 32, 4096, 32000)


def test_the_rules_of_thumb() -> None:
    full = estimate_memory(SEVEN_B, "bf16", batch_size=1, seq_len=1)
    assert full.weights == 14_000_000_000  # 2 bytes a parameter in bf16
    assert full.training_state == 112_000_000_000  # 16 bytes a trained parameter with Adam
    lora = estimate_memory(SEVEN_B_LORA, "bf16", 1, 1)
    assert lora.training_state == 64_000_000 and lora.weights == full.weights
    assert estimate_memory(SEVEN_B, "fp32", 1, 1).weights == 28_000_000_000


def test_activations_grow_with_tokens() -> None:
    small = estimate_memory(SEVEN_B_LORA, "bf16", batch_size=1, seq_len=512).activations
    assert estimate_memory(SEVEN_B_LORA, "bf16", batch_size=4, seq_len=512).activations == 4 * small
    assert (
        estimate_memory(SEVEN_B_LORA, "bf16", batch_size=1, seq_len=2048).activations == 4 * small
    )


def test_a_run_that_cannot_fit_is_refused_with_what_would_fit() -> None:
    with pytest.raises(MemoryError, match=r"exceeds the 80\.00 GiB available; no batch size fits"):
        check_fits(SEVEN_B, "bf16", 8, 2048, 80 * GIB)  # full fine-tuning of 7B on one 80 GB GPU
    fits = largest_batch_that_fits(SEVEN_B_LORA, "bf16", 2048, 40 * GIB)
    assert fits >= 1
    with pytest.raises(MemoryError, match=f"batch_size={fits} fits"):
        check_fits(SEVEN_B_LORA, "bf16", fits + 1, 2048, 40 * GIB)
    assert check_fits(SEVEN_B_LORA, "bf16", fits, 2048, 40 * GIB).total <= 40 * GIB


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="precision"):
        estimate_memory(SEVEN_B, "int3", 1, 1)
