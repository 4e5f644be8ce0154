import json
from fractions import Fraction

import pytest

from llmops.cli import main
from tasks.core.capacity import (
    GPU_MEMORY_GIB,
    decoder_shape,
    idle_fraction,
    plan_capacity,
    plan_for,
    trainable_parameters,
)
from tasks.core.memory import GIB, ModelShape, estimate_memory

pytestmark = pytest.mark.unit

SMALL = ModelShape(parameters=2_000_000, trainable=16_384, layers=4, hidden=128, vocab=8000)
# Full fine-tuning of 14B: 18 bytes a parameter (bf16 weights + Adam) needs 3.3 H100s' 72 GiB
FOURTEEN_B = ModelShape(14_000_000_000, 14_000_000_000, layers=40, hidden=5120, vocab=32000)


@pytest.mark.parametrize(
    ("m", "n", "idle"),
    [(1, 1, 0), (8, 1, 0), (8, 4, Fraction(3, 11)), (4, 2, Fraction(1, 5)), (1, 8, Fraction(7, 8))],
)
def test_the_pipeline_bubble(m: int, n: int, idle: Fraction) -> None:
    assert idle_fraction(m, n) == pytest.approx(float(idle))


@pytest.mark.parametrize(
    ("shape", "gpu", "seq", "batch", "expected"),
    [
        # A replica fits one GPU: data-parallel, no bubble, the whole batch in one micro-batch.
        (
            SMALL,
            "T4",
            128,
            8,
            {
                "gpus": 1,
                "parallelism": "data-parallel",
                "pipeline_stages": 1,
                "micro_batch": 8,
                "idle_fraction": 0.0,
            },
        ),
        # 7B LoRA at 2048 tokens: 3 sequences fit (18.5 GB each); 8 replicas, 4 x 2 each.
        (
            ModelShape(7 * 10**9, 4_194_304, 32, 4096, 32000),
            "A100-80GB",
            2048,
            64,
            {
                "gpus": 8,
                "parallelism": "data-parallel",
                "data_parallel": 8,
                "micro_batch": 2,
                "micro_batches": 4,
                "global_batch": 64,
                "idle_fraction": 0.0,
            },
        ),
        # 14B full: 4 pipeline stages, 8 micro-batches of 1: idle 3/11.
        (
            FOURTEEN_B,
            "H100",
            128,
            8,
            {
                "gpus": 4,
                "parallelism": "pipeline",
                "pipeline_stages": 4,
                "micro_batch": 1,
                "micro_batches": 8,
                "idle_fraction": 3 / 11,
            },
        ),
    ],
)
def test_plans(shape, gpu, seq, batch, expected) -> None:
    plan = plan_capacity(shape, gpu, seq, batch)
    got = {k: getattr(plan, k) for k in expected}
    assert got == pytest.approx(expected)
    assert 0 < plan.memory.total <= 0.9 * GPU_MEMORY_GIB[gpu] * GIB
    assert plan.headroom == GPU_MEMORY_GIB[gpu] * GIB - plan.memory.total
    assert plan.global_batch >= batch


def test_a_pipeline_stage_holds_a_share_of_the_model() -> None:
    plan = plan_capacity(FOURTEEN_B, "H100", 128, 8)
    whole = estimate_memory(FOURTEEN_B, "bf16", 1, 128)
    assert plan.memory.weights == whole.weights // 4
    assert plan.memory.training_state == whole.training_state // 4
    with pytest.raises(ValueError, match="4 pipeline stages of a H100 are needed, more than"):
        plan_capacity(FOURTEEN_B, "H100", 128, 8, max_gpus=2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gpu_type": "V100"}, "unknown GPU type 'V100'"),
        ({"method": "qlora"}, "method must be 'lora' or 'full'"),
        ({"lora_rank": 0}, "lora_rank must be >= 1"),
        ({"seq_len": 0}, "must all be >= 1"),
        ({"global_batch": 0}, "must all be >= 1"),
        ({"precision": "int4"}, "precision must be one of"),
        ({"parameters": None}, "give the parameter count, or layers and hidden"),
        ({"parameters": None, "layers": 4}, "give the parameter count, or layers and hidden"),
        ({"layers": 4}, "give layers and hidden together"),
        # 1.6e12 parameters in 2 layers: more stages than layers would be needed.
        (
            {"parameters": 1_600_000_000_000, "layers": 2, "hidden": 8192, "method": "full"},
            r"nothing fits a A100-80GB: even one layer a GPU \(2 pipeline stages",
        ),
    ],
)
def test_bad_input_is_refused_with_what_is_wrong(kwargs, message) -> None:
    base = {"gpu_type": "A100-80GB", "seq_len": 2048, "global_batch": 64, "parameters": 7 * 10**9}
    with pytest.raises(ValueError, match=message):
        plan_for(**{**base, **kwargs})


def test_shape_from_the_parameter_count_alone() -> None:
    parameters, layers, hidden, vocab = decoder_shape(7 * 10**9)
    assert parameters == 7 * 10**9 and vocab == 32000
    assert 32 <= layers <= 33 and 4000 <= hidden <= 4300  # Llama 7B: 32 layers of 4096
    assert decoder_shape(None, 4, 128, 8000)[0] == 12 * 4 * 128**2 + 2 * 8000 * 128
    assert trainable_parameters("lora", 7 * 10**9, 32, 4096, 8) == 4_194_304  # PEFT's count
    assert trainable_parameters("full", 7 * 10**9, 32, 4096, 8) == 7 * 10**9


def test_the_planner_gives_the_fine_tuning_stages_own_numbers_for_the_default_model() -> None:
    """The default model, built as the fine-tuning stage builds it, with LoRA as it adds it."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from tasks.finetune.base_model import ScratchSpec
    from tasks.finetune.params import LoraParams
    from tasks.finetune.prepare import model_shape

    spec = ScratchSpec()
    config = LlamaConfig(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        max_position_embeddings=spec.max_position_embeddings,
    )
    lora = LoraParams()
    model = get_peft_model(
        LlamaForCausalLM(config), LoraConfig(task_type="CAUSAL_LM", **lora.model_dump())
    )
    stage = model_shape(model)  # what `prepare` estimates the run's memory from
    plan = plan_for(
        "T4", 128, 8, "lora", lora.r, stage.parameters, stage.layers, stage.hidden, stage.vocab
    )
    assert plan.shape == stage  # LoRA's trainable count included
    assert plan.memory == estimate_memory(stage, "bf16", plan.micro_batch, 128)
    assert (plan.gpus, plan.pipeline_stages, plan.idle_fraction) == (1, 1, 0.0)


def test_the_command_prints_a_table_or_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "plan-capacity",
        "--params",
        "7e9",
        "--method",
        "lora",
        "--gpu",
        "A100-80GB",
        "--seq-len",
        "2048",
        "--batch",
        "64",
    ]
    main(args)
    table = capsys.readouterr().out
    assert "data-parallel: 8 replica(s) x 1 stage(s)" in table and "idle fraction" in table
    main([*args, "--json"])
    plan = json.loads(capsys.readouterr().out)
    assert plan["gpus"] == 8 and plan["idle_fraction"] == 0 and plan["headroom_gib"] > 0
    with pytest.raises(SystemExit) as exit_:
        main(["plan-capacity", "--params", "7e9", "--gpu", "K80"])
    assert exit_.value.code == 1 and "unknown GPU type 'K80'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["plan-capacity", "--params", "seven", "--gpu", "T4"])
