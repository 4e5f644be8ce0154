import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, LlamaConfig, LlamaForCausalLM

from tasks.compress.methods.lowrank import LowRankLinear, factorize_lowrank
from tasks.compress.methods.prune import (
    hold_zeros,
    prune_magnitude,
    prune_structured,
    release_zeros,
)
from tasks.compress.methods.quantize import (
    DynamicInt8Linear,
    Int8Embedding,
    StaticInt8Linear,
    decoder_linears,
    quantize_dynamic_int8,
    quantize_static_int8,
    to_half,
)
from tasks.shared.candidates import WEIGHTS, load_candidate, save_candidate

# torch 2.13 deprecates the quantized-tensor constructors the int8 kernels need (pytorch#184982)
pytestmark = [
    pytest.mark.unit,
    pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning"),
]

Method = Callable[[LlamaForCausalLM], tuple[dict[str, Any], set[str]]]


def tiny_llama(hidden: int = 32, intermediate: int = 64, kv_heads: int = 4) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval()


def token_ids(rows: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 64, (rows, 12), generator=torch.Generator().manual_seed(seed))


def logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save(model: torch.nn.Module, step: dict[str, Any], tmp_path: Path, sparse=frozenset()) -> Path:
    tokenizer = tmp_path / "tokenizer"
    tokenizer.mkdir(exist_ok=True)
    recipe = {"method": step["kind"], "steps": [step]}
    return save_candidate(model, tmp_path / "candidate", recipe, tokenizer, sparse=set(sparse))


def weights_size(folder: Path) -> int:
    return (folder / WEIGHTS).stat().st_size


def fp32_size(model: torch.nn.Module, tmp_path: Path) -> int:
    return weights_size(
        save_candidate(model, tmp_path / "fp32", {"method": "none", "steps": []}, tmp_path)
    )


METHODS: dict[str, Method] = {
    "int8_dynamic": lambda m: (quantize_dynamic_int8(m), set()),
    "int8_static": lambda m: (quantize_static_int8(m, token_ids(16, seed=2)), set()),
    "bf16": lambda m: (to_half(m, "bf16"), set()),
    "fp16": lambda m: (to_half(m, "fp16"), set()),
    "magnitude": lambda m: prune_magnitude(m, 0.5),
    "structured_mlp": lambda m: (prune_structured(m, "mlp", 0.25), set()),
    "structured_heads": lambda m: (prune_structured(m, "heads", 0.5), set()),
    "lowrank": lambda m: (factorize_lowrank(m, 0.8), set()),
}


@pytest.mark.parametrize("name", list(METHODS))
def test_saved_candidate_reloads_with_bit_identical_logits(name: str, tmp_path: Path) -> None:
    model = tiny_llama()
    step, sparse = METHODS[name](model)
    ids = token_ids(3, seed=1)
    before = logits(model, ids)

    reloaded = load_candidate(save(model, step, tmp_path, sparse))

    assert torch.equal(logits(reloaded, ids), before)


@pytest.mark.parametrize("name", ["int8_dynamic", "int8_static"])
def test_int8_stays_close_to_float(name: str) -> None:
    model = tiny_llama()
    ids = token_ids(4, seed=1)
    reference = logits(model, ids)

    METHODS[name](model)
    got = logits(model, ids)

    assert relative_error(got, reference) < 0.03
    assert torch.cosine_similarity(got.flatten(), reference.flatten(), dim=0) > 0.999
    kind = DynamicInt8Linear if name == "int8_dynamic" else StaticInt8Linear
    assert all(isinstance(m, kind) for m in decoder_linears(model).values())
    assert isinstance(model.lm_head, DynamicInt8Linear)


@pytest.mark.parametrize("name", ["int8_dynamic", "int8_static"])
def test_int8_ties_embedding_to_head_and_stores_one_matrix(name: str, tmp_path: Path) -> None:
    model = tiny_llama(hidden=64, intermediate=256)  # linear-dominated, as real models are
    reference_size = fp32_size(model, tmp_path)
    step, _ = METHODS[name](model)
    embed = model.get_input_embeddings()
    assert isinstance(embed, Int8Embedding)
    assert embed.weight_int8 is model.lm_head.weight_int8
    assert embed.weight_scale is model.lm_head.weight_scale

    folder = save(model, step, tmp_path)
    int8_keys = [k for k in load_file(folder / WEIGHTS) if k.endswith("weight_int8")]
    assert len(int8_keys) == len(step["linears"]) + 1  # the head's matrix is the embedding's
    assert "lm_head.weight_int8" not in int8_keys
    assert weights_size(folder) <= 0.35 * reference_size
    reloaded = load_candidate(folder)
    assert reloaded.model.embed_tokens.weight_int8 is reloaded.lm_head.weight_int8


def test_int8_untied_embedding_is_quantized_on_its_own(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).eval()
    ids = token_ids(2, seed=1)
    reference = logits(model, ids)
    step = quantize_dynamic_int8(model)
    assert model.model.embed_tokens.weight_int8 is not model.lm_head.weight_int8
    assert relative_error(logits(model, ids), reference) < 0.03
    assert torch.equal(logits(load_candidate(save(model, step, tmp_path)), ids), logits(model, ids))


def test_dynamic_int8_linear_takes_any_leading_shape_and_refreshes_after_load() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 8)
    int8 = DynamicInt8Linear(16, 8, bias=True)
    int8.set_weights(linear.weight, linear.bias)
    x = torch.randn(2, 3, 5, 16)
    out = int8(x)
    assert out.shape == (2, 3, 5, 8)
    assert relative_error(out, linear(x).detach()) < 0.03

    other = DynamicInt8Linear(16, 8, bias=True)
    other(x)  # packs its own (empty) weights first
    other.load_state_dict(int8.state_dict())
    assert torch.equal(other(x), out)
    assert torch.equal(copy.deepcopy(other)(x), out)


def test_half_precision_stays_close_and_halves_the_file(tmp_path: Path) -> None:
    model = tiny_llama()
    ids = token_ids(4, seed=1)
    reference = logits(model, ids)
    reference_size = fp32_size(model, tmp_path)
    step = to_half(model, "bf16")
    assert step == {"kind": "half", "dtype": "bf16"}
    assert relative_error(logits(model, ids), reference) < 0.02
    assert weights_size(save(model, step, tmp_path)) < 0.55 * reference_size


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.8])
def test_magnitude_pruning_reaches_the_target_and_only_zeros_weights(sparsity: float) -> None:
    model = tiny_llama()
    original = copy.deepcopy(model.state_dict())
    step, sparse = prune_magnitude(model, sparsity)

    weights = [linear.weight for linear in decoder_linears(model).values()]
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros == round(sparsity * total)  # the global threshold is exact
    assert step["reached"] == pytest.approx(sparsity, abs=1e-3)
    assert sparse == set(step["weights"])
    pruned, survivors = [], []
    for name, tensor in model.state_dict().items():
        if name in sparse:
            kept = tensor != 0
            assert torch.equal(tensor[kept], original[name][kept])
            pruned.append(original[name][~kept].abs())
            survivors.append(tensor[kept].abs())
        else:
            assert torch.equal(tensor, original[name])
    # the smallest magnitudes went, over all layers together
    assert torch.cat(pruned).max() < torch.cat(survivors).min()


def test_magnitude_pruning_is_global_across_layers() -> None:
    model = tiny_llama()
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.mul_(100)  # one loud layer keeps its weights
    prune_magnitude(model, 0.5)
    assert (model.model.layers[0].mlp.up_proj.weight == 0).float().mean() < 0.01


def test_magnitude_pruned_file_is_smaller_than_dense(tmp_path: Path) -> None:
    model = tiny_llama(hidden=64, intermediate=256)
    reference_size = fp32_size(model, tmp_path)
    step, sparse = prune_magnitude(model, 0.5)
    assert weights_size(save(model, step, tmp_path, sparse)) < 0.7 * reference_size


def test_hold_zeros_keeps_pruned_weights_zero_through_training() -> None:
    model = tiny_llama()
    _, sparse = prune_magnitude(model, 0.5)
    before = {name: t.clone() for name, t in model.state_dict().items() if name in sparse}
    hold_zeros(model, sparse)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids = token_ids(4, seed=3)
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    release_zeros(model)

    state = model.state_dict()
    assert not any(name.endswith(("_orig", "_mask")) for name in state)
    for name, old in before.items():
        assert torch.equal(state[name] == 0, old == 0)
    assert any(not torch.equal(state[name], old) for name, old in before.items())


def test_structured_mlp_pruning_removes_neurons_like_zeroing_them(tmp_path: Path) -> None:
    model = tiny_llama()
    original = copy.deepcopy(model)
    step = prune_structured(model, "mlp", 0.25)

    assert step["removed_per_layer"] == 16
    assert model.config.intermediate_size == 48
    assert n_params(original) - n_params(model) == 2 * 3 * 32 * 16
    for old, new in zip(original.model.layers, model.model.layers, strict=True):
        assert new.mlp.gate_proj.weight.shape == (48, 32)
        assert new.mlp.down_proj.weight.shape == (32, 48)
        removed = _missing_rows(old.mlp.gate_proj.weight, new.mlp.gate_proj.weight)
        with torch.no_grad():
            old.mlp.down_proj.weight[:, removed] = 0
    ids = token_ids(3, seed=1)
    assert torch.allclose(logits(model, ids), logits(original, ids), atol=1e-5)
    assert AutoConfig.from_pretrained(save(model, step, tmp_path)).intermediate_size == 48


def test_structured_head_pruning_removes_heads_like_zeroing_them(tmp_path: Path) -> None:
    model = tiny_llama()
    original = copy.deepcopy(model)
    step = prune_structured(model, "heads", 0.5)

    assert (model.config.num_attention_heads, model.config.num_key_value_heads) == (2, 2)
    assert model.config.head_dim == 8
    assert n_params(original) - n_params(model) == 2 * 4 * 32 * 16
    for old, new in zip(original.model.layers, model.model.layers, strict=True):
        assert new.self_attn.q_proj.weight.shape == (16, 32)
        assert new.self_attn.o_proj.weight.shape == (32, 16)
        heads_q = old.self_attn.q_proj.weight.view(4, -1)
        removed = _missing_rows(heads_q, new.self_attn.q_proj.weight.view(2, -1))
        columns = (torch.tensor(removed)[:, None] * 8 + torch.arange(8)).flatten()
        with torch.no_grad():
            old.self_attn.o_proj.weight[:, columns] = 0
    ids = token_ids(3, seed=1)
    assert torch.allclose(logits(model, ids), logits(original, ids), atol=1e-5)
    config = AutoConfig.from_pretrained(save(model, step, tmp_path))
    assert (config.num_attention_heads, config.head_dim) == (2, 8)


def _missing_rows(before: torch.Tensor, after: torch.Tensor) -> list[int]:
    return [i for i, row in enumerate(before) if not (after == row).all(1).any()]


def _make_low_rank(model: LlamaForCausalLM, rank: int) -> None:
    """Decoder weights of rank `rank` plus faint noise, as SVD has something to find."""
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for linear in decoder_linears(model).values():
            out_features, in_features = linear.weight.shape
            left = torch.randn(out_features, rank, generator=generator)
            right = torch.randn(rank, in_features, generator=generator)
            noise = torch.randn(out_features, in_features, generator=generator)
            linear.weight.copy_((left @ right + 1e-3 * noise) * 0.02)


def test_lowrank_at_high_energy_is_nearly_exact_and_counts_add_up() -> None:
    model = tiny_llama()
    _make_low_rank(model, rank=4)
    original = copy.deepcopy(model)
    ids = token_ids(4, seed=1)
    shapes = {name: linear.weight.shape for name, linear in decoder_linears(model).items()}

    step = factorize_lowrank(model, 0.999)

    assert set(step["ranks"]) == set(shapes)
    assert all(rank == 4 for rank in step["ranks"].values())
    saved = sum(o * i - 4 * (i + o) for o, i in shapes.values())
    assert n_params(original) - n_params(model) == saved
    assert all(isinstance(model.get_submodule(name), LowRankLinear) for name in shapes)
    assert relative_error(logits(model, ids), logits(original, ids)) < 1e-3


def test_lowrank_keeps_linears_whose_rank_would_not_save_parameters() -> None:
    model = tiny_llama()  # random weights: a flat spectrum, so high energy needs a high rank
    step = factorize_lowrank(model, 0.99)
    assert step["ranks"] == {}
    assert not any(isinstance(m, LowRankLinear) for m in model.modules())


def test_refusals() -> None:
    model = tiny_llama()
    for sparsity in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="sparsity"):
            prune_magnitude(model, sparsity)
    for fraction in (0.0, 1.0, -0.2):
        with pytest.raises(ValueError, match="fraction"):
            prune_structured(model, "mlp", fraction)
    with pytest.raises(ValueError, match="remove all"):
        prune_structured(model, "mlp", 0.999)
    with pytest.raises(ValueError, match="remove all"):
        prune_structured(model, "heads", 0.9)
    with pytest.raises(ValueError, match="removes none"):
        prune_structured(model, "heads", 0.1)
    with pytest.raises(ValueError, match="multiple of num_attention_heads"):
        prune_structured(model, "heads", 0.25)  # 3 heads cannot split a hidden size of 32
    with pytest.raises(ValueError, match="'mlp' or 'heads'"):
        prune_structured(model, "layers", 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="grouped-query"):
        prune_structured(tiny_llama(kv_heads=2), "heads", 0.5)
    for energy in (0.0, 1.5):
        with pytest.raises(ValueError, match="energy"):
            factorize_lowrank(model, energy)
    with pytest.raises(ValueError, match="dtype"):
        to_half(model, "fp8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="calibration"):
        quantize_static_int8(model, torch.randint(0, 64, (12,)))
    half = tiny_llama()
    to_half(half, "bf16")
    with pytest.raises(ValueError, match="float32"):
        quantize_dynamic_int8(half)
