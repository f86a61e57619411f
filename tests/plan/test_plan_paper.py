"""The paper's worked example (DeepSeek-V3.1 on 8xH200) and its rounding rule."""

from __future__ import annotations

import pytest

from tandem.plan.inputs import parse_throughput, parse_tpot_table, shape_from_means
from tandem.plan.paper import paper_plan, round_instances
from tandem.plan.planner import PlanRequest, make_plan, table_cost_model

TABLE = "10:12.8,20:16.4,30:18.8,40:21.6,50:23.9,60:26.2"


def _request() -> PlanRequest:
    cost = table_cost_model(
        input_len_tokens=6144,
        prefill_max_tokens_per_s=28300,
        overhead_s=0.1,
        tpot_points=parse_tpot_table(TABLE),
    )
    shape = shape_from_means(6144, 512)
    rate = parse_throughput("5M/min") / shape.tokens_per_request
    return PlanRequest(shape, rate, 2.0, 0.02, cost, overhead_s=0.1)


@pytest.mark.filterwarnings("ignore")
def test_worked_example_reproduces_the_papers_numbers() -> None:
    """TP_prefill ~ 25,066, TP_decode ~ 1,700, N_P ~ 3.07, N_D ~ 3.77, deployed 3P4D."""
    p = make_plan(_request()).paper
    assert p.prefill_tokens_per_s == pytest.approx(25066, abs=1)
    assert p.decode_batch_size == 34
    assert p.decode_tokens_per_s == pytest.approx(1700)
    assert p.raw_num_prefill == pytest.approx(3.07, abs=0.02)
    assert 3.74 <= p.raw_num_decode <= 3.8
    assert (p.num_prefill, p.num_decode) == (3, 4)
    assert p.feasible


@pytest.mark.filterwarnings("ignore")
def test_improved_plan_also_gives_3p4d_for_the_worked_example() -> None:
    """The improved model lands on the deployment the paper measured to work."""
    plan = make_plan(_request())
    assert (plan.num_prefill, plan.num_decode) == (3, 4)


def test_rounding_rule_rounds_up_unless_within_a_tenth() -> None:
    """ceil(x - 0.1), at least one."""
    assert [round_instances(x) for x in (3.07, 3.1, 3.11, 3.77, 0.05, 4.0)] == [3, 3, 4, 4, 1, 4]


def test_infeasible_ttft_is_reported_with_a_reason() -> None:
    """TTFT below one prompt's prefill plus overhead: feasible=False and says why."""
    p = paper_plan(
        total_tokens_per_s=1e5,
        input_len_tokens=6144,
        output_len_tokens=512,
        ttft_slo_s=0.3,
        tpot_slo_s=0.02,
        prefill_max_tokens_per_s=28300,
        overhead_s=0.1,
        tpot_at=lambda b: 0.01 + 0.0003 * b,
    )
    assert not p.feasible and p.reason is not None and "TTFT" in p.reason
