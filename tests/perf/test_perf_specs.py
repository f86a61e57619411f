"""Model and hardware specs, instances and KV arithmetic."""

from __future__ import annotations

import pytest

from tandem.errors import ConfigError, UnknownNameError
from tandem.perf.instance import InstanceSpec
from tandem.perf.specs import HARDWARE, MODELS, get_hardware, get_model

KIB = 1024


@pytest.mark.parametrize(
    ("model", "kib"),
    [("llama3-8b", 128), ("qwen2.5-7b", 56), ("llama2-70b", 320), ("llama2-7b", 512)],
)
def test_kv_bytes_per_token_matches_published_figures(model: str, kib: int) -> None:
    """2 x layers x KV heads x head dim x 2 bytes (bf16)."""
    assert get_model(model).kv_bytes_per_token == kib * KIB


def test_required_models_and_hardware_are_built_in() -> None:
    """The issue's model and GPU lists are all present."""
    for name in (
        "llama2-7b",
        "llama2-70b",
        "llama3-8b",
        "llama3-70b",
        "codellama-34b",
        "qwen2.5-7b",
        "opt-13b",
        "opt-66b",
    ):
        assert name in MODELS
    assert set(HARDWARE) >= {"a100", "h100", "h200", "b200"}
    assert get_model("DeepSeek-R1-Distill-Qwen-7B") is get_model("qwen2.5-7b")


def test_unknown_model_lists_the_choices() -> None:
    """A typo names what exists."""
    with pytest.raises(UnknownNameError) as err:
        get_model("llama9-1b")
    assert "llama3-8b" in str(err.value) and "qwen2.5-7b" in str(err.value)


def test_unknown_hardware_lists_the_choices() -> None:
    with pytest.raises(UnknownNameError) as err:
        get_hardware("tpu-v5")
    assert "h100" in str(err.value) and "b200" in str(err.value)


def test_kv_capacity_is_memory_minus_weights_minus_reserve() -> None:
    """capacity = (TP x HBM - weights - reserve) / KV bytes per token."""
    model, hw = get_model("llama3-8b"), get_hardware("a100")
    inst = InstanceSpec(model, hw, 1, activation_reserve_fraction=0.1)
    free = hw.hbm_capacity_bytes - model.weight_bytes - int(0.1 * hw.hbm_capacity_bytes)
    assert inst.kv_capacity_tokens == free // model.kv_bytes_per_token
    bigger_reserve = InstanceSpec(model, hw, 1, activation_reserve_fraction=0.3)
    assert bigger_reserve.kv_capacity_tokens < inst.kv_capacity_tokens
    assert InstanceSpec(model, hw, 2).kv_capacity_tokens > inst.kv_capacity_tokens


def test_model_that_does_not_fit_is_a_config_error() -> None:
    """Llama-2-70B (138 GB of weights) cannot run on one 80 GB GPU."""
    with pytest.raises(ConfigError, match="no room for KV cache"):
        InstanceSpec(get_model("llama2-70b"), get_hardware("a100"), 1)


def test_heads_must_split_over_tensor_parallel() -> None:
    with pytest.raises(ConfigError, match="do not split"):
        InstanceSpec(get_model("qwen2.5-7b"), get_hardware("h100"), 3)


def test_kv_transfer_is_latency_plus_bytes_over_bandwidth() -> None:
    """Each GPU sends its shard over its own NIC, so bandwidth scales with TP."""
    inst = InstanceSpec(get_model("llama2-70b"), get_hardware("h100"), 4)
    n = 10_000
    expected = 10e-6 + n * 320 * KIB / (4 * 50e9)
    assert inst.kv_transfer_time_s(n) == pytest.approx(expected)
    assert inst.kv_transfer_time_s(0) == 0.0
