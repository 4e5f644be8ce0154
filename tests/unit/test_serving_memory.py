import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig

from tasks.core.memory import GIB, ModelShape
from tasks.core.serving_memory import (
    WORKSPACE,
    ServingMemoryError,
    ServingShape,
    check_serving_fits,
    estimate_serving,
    largest_serving_batch,
    largest_serving_context,
    serving_budget,
    shape_from_config,
)
from tasks.shared.devices import serving_shape_of

pytestmark = pytest.mark.unit

# Llama-3-8B's shape: 8.03B parameters, 32 layers, hidden 4096, 8 KV heads of 128, vocab 128256.
EIGHT_B = ServingShape(ModelShape(8_030_261_248, 0, 32, 4096, 128_256), kv_heads=8, head_dim=128)
SEVENTY_B = ServingShape(ModelShape(70_553_706_496, 0, 80, 8192, 128_256), kv_heads=8, head_dim=128)


def test_gpt2_small_figures_by_hand() -> None:
    # GPT-2 small (124M): 12 layers, 12 heads of 64, hidden 768, vocab 50257, 1024 positions.
    # Built on the meta device: the shape and parameter count without allocating weights.
    with torch.device("meta"):
        model = GPT2LMHeadModel(GPT2Config())
    shape = serving_shape_of(model)
    assert shape.model.parameters == 124_439_808  # the LM head is tied to the embedding
    assert (shape.model.layers, shape.kv_heads, shape.head_dim) == (12, 12, 64)
    assert (shape.model.hidden, shape.model.vocab) == (768, 50257)
    # fp16, max_batch 8 x context 1024 = 8192 tokens:
    #   weights      124,439,808 x 2                          =   248,879,616
    #   KV cache     2 x 12 layers x 12 heads x 64 x 2 B      = 36,864 B a token
    #                x 8192 tokens                            =   301,989,888 (288 MiB)
    #   activations  8192 x 16 x 768 x 2                      =   201,326,592
    #                + mask 8 x 1024 x 1024 x (1 + 2)         =    25,165,824
    #                + logits 8 x 50257 x 4 B x 4 copies      =     6,432,896
    #   workspace    1 GiB                                    = 1,073,741,824
    #   total                                                 = 1,857,536,640 (1.73 GiB)
    estimate = estimate_serving(shape, "fp16", max_batch=8, context=1024)
    assert estimate.weights == 248_879_616
    assert estimate.kv_cache == 301_989_888
    assert estimate.activations == 201_326_592 + 25_165_824 + 6_432_896
    assert estimate.workspace == WORKSPACE == GIB
    assert estimate.total == 1_857_536_640
    assert estimate.table()[-1] == {"part": "total per replica", "GiB": 1.7300}


def test_grouped_query_attention_and_head_dim_come_from_the_config() -> None:
    config = LlamaConfig(
        hidden_size=4096, num_attention_heads=32, num_key_value_heads=8, num_hidden_layers=32
    )
    shape = shape_from_config(config, parameters=1)
    assert (shape.kv_heads, shape.head_dim) == (8, 128)
    config = LlamaConfig(hidden_size=2048, num_attention_heads=8, head_dim=256)
    shape = shape_from_config(config, parameters=1)
    assert (shape.kv_heads, shape.head_dim) == (8, 256)  # no num_key_value_heads: MHA


def test_kv_cache_grows_with_batch_and_context() -> None:
    one = estimate_serving(EIGHT_B, "bf16", 1, 1024).kv_cache
    assert one == 2 * 32 * 8 * 128 * 2 * 1024  # 128 KiB a token
    assert estimate_serving(EIGHT_B, "bf16", 4, 1024).kv_cache == 4 * one
    assert estimate_serving(EIGHT_B, "bf16", 1, 4096).kv_cache == 4 * one
    assert estimate_serving(EIGHT_B, "fp32", 1, 1024).kv_cache == 2 * one


def test_a_replica_that_fits_an_80_gib_device_is_accepted() -> None:
    # bf16, 8 x 4096: weights 14.96 GiB, KV 4 GiB, activations 4 + 0.375 GiB, workspace 1 GiB.
    estimate = check_serving_fits(EIGHT_B, "bf16", 8, 4096, 80 * GIB)
    assert 24 * GIB < estimate.total < 25 * GIB


def test_a_replica_that_cannot_fit_is_refused_with_what_would() -> None:
    # bf16, 64 x 8192: KV 64 GiB and prefill activations 64 GiB on top of 14.96 GiB of weights.
    with pytest.raises(ServingMemoryError) as refused:
        check_serving_fits(EIGHT_B, "bf16", 64, 8192, 80 * GIB)
    batch = largest_serving_batch(EIGHT_B, "bf16", 8192, 80 * GIB)
    context = largest_serving_context(EIGHT_B, "bf16", 64, 80 * GIB, 8192)
    # About 2.19 GiB a row of 8192 tokens in the 64.04 GiB left beside weights and workspace.
    assert batch == 29 and 0 < context < 8192
    assert estimate_serving(EIGHT_B, "bf16", batch, 8192).total <= 80 * GIB
    assert estimate_serving(EIGHT_B, "bf16", batch + 1, 8192).total > 80 * GIB
    assert estimate_serving(EIGHT_B, "bf16", 64, context).total <= 80 * GIB
    assert estimate_serving(EIGHT_B, "bf16", 64, context + 1).total > 80 * GIB
    message = str(refused.value)
    assert isinstance(refused.value, ValueError)
    assert "needs an estimated 156.08 GiB" in message and "the device has 80.00 GiB" in message
    assert f"max_batch={batch} at context 8192 or context={context} at max_batch 64" in message
    assert refused.value.budget == 80 * GIB


def test_weights_alone_too_large_say_nothing_fits() -> None:
    # 70B in bf16: 131.4 GiB of weights before any cache.
    with pytest.raises(ValueError, match="no batch or context fits"):
        check_serving_fits(SEVENTY_B, "bf16", 1, 128, 80 * GIB)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        estimate_serving(EIGHT_B, "int4", 1, 1)
    with pytest.raises(ValueError, match="gpus_asked > 0"):
        serving_budget(0, 80 * GIB, 80 * GIB)


def test_a_fraction_of_a_gpu_gets_its_share_and_never_more_than_is_free() -> None:
    assert serving_budget(0.5, 80 * GIB, 79 * GIB) == 40 * GIB
    assert serving_budget(0.5, 80 * GIB, 30 * GIB) == 30 * GIB
    assert serving_budget(1, 80 * GIB, 79 * GIB) == 79 * GIB
