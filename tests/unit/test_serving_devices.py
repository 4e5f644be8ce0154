import pytest
import torch
from torch import nn
from torch.ao.nn.quantized import dynamic as ao_dynamic
from transformers import LlamaConfig, LlamaForCausalLM

from tasks.compress.methods.quantize import quantize_dynamic_int8, to_half
from tasks.shared.devices import (
    check_replica_memory,
    choose_device,
    choose_dtype,
    cpu_only_layers,
    place,
    precision_of,
    replica_placement,
    serving_shape_of,
)

pytestmark = [
    pytest.mark.unit,
    # torch 2.13 deprecates the quantized-tensor constructors the int8 kernels need (pytorch#184982)
    pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning"),
]


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval()


def int8_llama() -> LlamaForCausalLM:
    model = tiny_llama()
    quantize_dynamic_int8(model)
    return model


def test_a_replica_runs_where_it_asked_ray_to() -> None:
    assert choose_device(0, cuda_available=False) == "cpu"
    assert choose_device(0, cuda_available=True) == "cpu"  # a GPU not asked for is not ours
    assert choose_device(1, cuda_available=True) == "cuda"
    assert choose_device(0.25, cuda_available=True) == "cuda"


def test_asked_gpus_but_none_visible_is_an_error_not_a_cpu_fallback() -> None:
    with pytest.raises(RuntimeError, match="asked for 1 GPU but torch sees none"):
        choose_device(1, cuda_available=False)
    with pytest.raises(ValueError, match="at most one GPU"):
        choose_device(2, cuda_available=True)
    with pytest.raises(ValueError, match="at most one GPU"):
        choose_device(-1, cuda_available=True)


def test_dtype_bf16_on_gpu_fp16_without_bf16_fp32_on_cpu() -> None:
    model = tiny_llama()
    assert choose_dtype("cuda", model) == torch.bfloat16
    assert choose_dtype("cuda", model, bf16_supported=False) == torch.float16
    assert choose_dtype("cpu", model) == torch.float32


def test_a_half_precision_candidate_keeps_the_dtype_it_was_evaluated_in() -> None:
    bf16 = tiny_llama()
    to_half(bf16, "bf16")
    assert choose_dtype("cpu", bf16) == torch.bfloat16
    assert choose_dtype("cuda", bf16) == torch.bfloat16
    assert choose_dtype("cuda", bf16, bf16_supported=False) == torch.float32  # fp16 may overflow
    fp16 = tiny_llama()
    to_half(fp16, "fp16")
    assert choose_dtype("cuda", fp16) == choose_dtype("cpu", fp16) == torch.float16


def test_int8_layers_are_found_and_refused_on_the_gpu() -> None:
    model = int8_llama()
    names = cpu_only_layers(model)
    assert "lm_head" in names and "model.layers.0.self_attn.q_proj" in names
    assert len(names) == 2 * 7 + 1  # 7 linears a layer, and the head
    with pytest.raises(ValueError, match=r"15 int8 layers \(.*\) whose kernels run on the CPU"):
        choose_device(1, cuda_available=True, cpu_only=names)
    with pytest.raises(ValueError, match="model_gpus=0"):
        choose_dtype("cuda", model)
    with pytest.raises(ValueError, match="run on the CPU only"):
        place(model, "cuda", torch.float32)  # refused before torch is asked for CUDA
    with pytest.raises(ValueError, match="int8 layers compute in float32"):
        place(model, "cpu", torch.bfloat16)
    assert choose_dtype("cpu", model) == torch.float32


def test_torch_own_dynamic_int8_linear_is_cpu_only_too() -> None:
    model = nn.Sequential(nn.LayerNorm(8), ao_dynamic.Linear(8, 4))
    assert cpu_only_layers(model) == ["1"]
    with pytest.raises(ValueError, match="1 int8 layers"):
        place(model, "cuda", torch.float32)


def test_an_int8_model_still_runs_after_place_on_cpu() -> None:
    model = int8_llama()
    ids = torch.tensor([[1, 2, 3, 4]])
    before = model(input_ids=ids).logits
    assert place(model, "cpu", torch.float32) is model
    assert torch.equal(model(input_ids=ids).logits, before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_place_on_cpu_casts_parameters_only_and_keeps_ties(dtype: torch.dtype) -> None:
    model = tiny_llama()
    ids = torch.tensor([[1, 2, 3, 4]])
    reference = model(input_ids=ids).logits
    placed = place(model, "cpu", dtype)
    assert placed is model
    assert {p.dtype for p in model.parameters()} == {dtype}
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert model.model.rotary_emb.inv_freq.dtype == torch.float32  # buffers keep theirs
    assert model.lm_head.weight is model.model.embed_tokens.weight
    logits = model(input_ids=ids).logits
    assert logits.dtype == dtype
    tolerance = 0 if dtype == torch.float32 else 0.05
    assert torch.allclose(logits.float(), reference, atol=tolerance)


def test_precision_names_for_the_memory_estimate() -> None:
    assert [precision_of(d) for d in (torch.float32, torch.bfloat16, torch.float16)] == [
        "fp32",
        "bf16",
        "fp16",
    ]
    with pytest.raises(ValueError, match="no serving precision"):
        precision_of(torch.int8)


def test_an_int8_model_is_sized_by_its_int8_weights() -> None:
    plain, int8 = tiny_llama(), int8_llama()
    # The tied head and embedding share one int8 tensor, as they shared one parameter.
    assert serving_shape_of(int8).model.parameters == serving_shape_of(plain).model.parameters
    assert (serving_shape_of(plain).kv_heads, serving_shape_of(plain).head_dim) == (2, 8)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU machine's answers")
def test_on_a_machine_without_cuda() -> None:
    model = tiny_llama()
    assert replica_placement(model, 0) == ("cpu", torch.float32)
    with pytest.raises(RuntimeError, match="Not falling back to the CPU"):
        replica_placement(model, 1)
    assert check_replica_memory(model, "cpu", torch.float32, 0, 8, 32) is None
