import json
import time

import pytest
from pydantic import ValidationError

from tasks.core.cost import (
    GIB,
    Prices,
    Usage,
    estimate_cost,
    stage_usage,
    usage_metrics,
    version_cost,
)
from tasks.shared.settings import get_settings
from tasks.shared.usage import FLOW_PROCESS, ProcessMeter, process_cores, ray_worker_usage

pytestmark = pytest.mark.integration

PRICES = Prices(cpu_hour=0.04, memory_gib_hour=0.005, gpu_hour={"T4": 0.35, "H100": 11.0})


def part(wall: float = 3600, cores: float = 1, gpus: float = 0, gib: float = 0, **kw) -> Usage:
    return Usage(
        part="p",
        wall_s=wall,
        cores=cores,
        cpu_s=0,
        gpus=gpus,
        peak_memory_bytes=int(gib * GIB),
        **kw,
    )


@pytest.mark.parametrize(
    ("usage", "cpu", "memory", "gpu"),
    [
        (part(), 0.04, 0, 0),  # one core for an hour
        (part(wall=1800, cores=4), 0.08, 0, 0),  # four cores for half an hour
        (part(cores=0, gib=10), 0, 0.05, 0),  # 10 GiB held for an hour
        (part(cores=8, gpus=2, gpu_type="H100"), 0.32, 0, 22.0),
        (part(wall=0, cores=64, gpus=8, gpu_type="H100", gib=500), 0, 0, 0),  # held no time
        ([part(), part(wall=7200, cores=2, gpus=1, gpu_type="T4")], 0.2, 0, 0.7),
    ],
)
def test_cost_is_what_was_held_times_its_price(usage, cpu, memory, gpu) -> None:
    cost = estimate_cost(usage, PRICES)
    assert (cost.cpu, cost.memory, cost.gpu) == pytest.approx((cpu, memory, gpu))
    assert cost.total == pytest.approx(cpu + memory + gpu) and cost.currency == "USD"


def test_the_gpu_type_comes_from_the_part_or_else_the_price_table() -> None:
    untyped = part(cores=0, gpus=1)
    with pytest.raises(ValueError, match="GPU-seconds of no known type: set the GPU type"):
        estimate_cost(untyped, PRICES)
    table = PRICES.model_copy(update={"gpu_type": "T4"})
    assert estimate_cost(untyped, table).gpu == pytest.approx(0.35)
    assert estimate_cost(part(cores=0, gpus=1, gpu_type="H100"), table).gpu == pytest.approx(11)
    with pytest.raises(ValueError, match="GPU type 'V100' has no price"):
        estimate_cost(part(cores=0, gpus=1, gpu_type="V100"), PRICES)


def test_bad_price_tables_are_refused() -> None:
    with pytest.raises(ValidationError, match="gpu_type 'B200' has no price"):
        Prices(gpu_type="B200")
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        Prices(cpu_hour=-1)
    with pytest.raises(ValidationError, match="must not be negative"):
        Prices(gpu_hour={"T4": -0.1})


def test_prices_come_from_settings_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    default = get_settings().prices
    assert default.gpu_type is None and default.gpu_hour["A100-80GB"] > default.gpu_hour["T4"]
    assert "2024" in default.source
    monkeypatch.setenv("LLMOPS_PRICES", json.dumps({"cpu_hour": 0.1, "gpu_type": "L4"}))
    prices = get_settings().prices
    assert (prices.cpu_hour, prices.gpu_type) == (0.1, "L4")
    assert prices.memory_gib_hour == default.memory_gib_hour  # keys left out keep defaults
    monkeypatch.setenv("LLMOPS_PRICES", json.dumps({"gpu_type": "TPU"}))
    with pytest.raises(ValidationError, match="gpu_type 'TPU' has no price"):
        get_settings()


def test_stages_add_up_and_a_model_version_costs_the_stages_that_made_it() -> None:
    stages = [
        stage_usage(name, 3600, [part(cores=n)], PRICES)
        for n, name in enumerate(["ingest", "embed", "finetune", "compress", "promote"], 1)
    ]
    assert [s.cost.total for s in stages] == pytest.approx([0.04, 0.08, 0.12, 0.16, 0.2])
    assert version_cost(stages) == pytest.approx(0.6 - 0.08)  # all but the search index


def test_usage_metrics_for_a_tracking_run() -> None:
    parts = [
        Usage(part=FLOW_PROCESS, wall_s=10, cores=2, cpu_s=3, peak_memory_bytes=GIB),
        Usage(part="ray worker 0", wall_s=8, cores=1, cpu_s=7, peak_memory_bytes=GIB // 2),
    ]
    metrics = usage_metrics(parts, PRICES)
    assert metrics["usage.cpu_core_s"] == 28 and metrics["usage.cpu_s"] == 10
    assert metrics["usage.wall_s"] == 10 and metrics["usage.gpu_s"] == 0
    assert metrics["usage.peak_memory_mib.flow_process"] == 1024
    assert metrics["usage.peak_memory_mib.ray_worker_0"] == 512
    assert metrics["usage.cost"] == pytest.approx(estimate_cost(parts, PRICES).total)


def test_the_process_meter_sees_cpu_time_and_memory_of_real_work() -> None:
    with ProcessMeter() as meter:
        block = bytearray(200 * 2**20)  # 200 MiB, touched so it is resident
        for i in range(0, len(block), 4096):
            block[i] = 1
        del block
        deadline = time.process_time() + 0.3
        while time.process_time() < deadline:  # burn 0.3 s of CPU
            pass
    used = meter.final
    assert used.cores == process_cores() >= 1 and used.cpu_s >= 0.3
    assert used.wall_s >= used.cpu_s / used.cores * 0.9
    assert used.peak_memory_bytes >= 200 * 2**20  # the peak stays after the memory is freed


def test_ray_workers_hold_their_cpus_and_gpus_for_the_training_time() -> None:
    reports = [
        {"rank": 1, "node": "b", "cpu_s": 5.0, "peak_memory_bytes": 9},
        {"rank": 0, "node": "a", "cpu_s": 6.0, "peak_memory_bytes": 8},
    ]
    parts = ray_worker_usage(reports, 20.0, 2, True, "T4")
    assert [(p.part, p.node, p.cpu_core_s, p.gpu_s, p.gpu_type) for p in parts] == [
        ("ray worker 1", "b", 40.0, 20.0, "T4"),
        ("ray worker 0", "a", 40.0, 20.0, "T4"),
    ]
    assert ray_worker_usage(reports, 20.0, 1, False, "T4")[0].gpu_type is None
