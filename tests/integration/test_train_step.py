import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tasks.finetune.loop import train_step

pytestmark = pytest.mark.integration


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    return LlamaForCausalLM(config)


def test_accumulating_two_micro_batches_equals_one_batch_of_both() -> None:
    batch = torch.randint(0, 64, (4, 12))
    whole, split = tiny_llama(), tiny_llama()
    split.load_state_dict(copy.deepcopy(whole.state_dict()))
    opt_whole = torch.optim.SGD(whole.parameters(), lr=0.1)
    opt_split = torch.optim.SGD(split.parameters(), lr=0.1)

    loss_whole = train_step(whole, opt_whole, [batch], amp=False)
    loss_split = train_step(split, opt_split, [batch[:2], batch[2:]], amp=False)

    assert abs(loss_whole - loss_split) < 1e-5
    for a, b in zip(whole.parameters(), split.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_step_lowers_the_loss_on_its_batch() -> None:
    model = tiny_llama()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = torch.randint(0, 64, (4, 12))
    first = train_step(model, optimizer, [batch], amp=False)
    for _ in range(5):
        last = train_step(model, optimizer, [batch], amp=False)
    assert last < first
