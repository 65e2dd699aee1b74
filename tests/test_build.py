"""ann.training.build: the learning-rate schedule of Sec. 4.2 (poly) and its optional warm-up."""

import pytest
import torch

from ann.training.build import build_optimizer, build_schedule
from ann.training.config import OptimConfig


def lrs(optim: OptimConfig, iterations: int, steps: int, state: dict | None = None) -> tuple[list, dict]:
    """(the lr of each of `steps` iterations, the state after them), from a fresh schedule or one
    restored from `state`."""
    optimizer = build_optimizer(torch.nn.Linear(2, 2), optim)
    schedule = build_schedule(optimizer, optim, iterations)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return seen, {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()}


def test_without_warmup_the_lr_decays_by_poly_from_the_first_iteration():
    optim = OptimConfig(lr=0.01, poly_power=0.9)
    expected = [0.01 * (1 - it / 10) ** 0.9 for it in range(10)]
    assert lrs(optim, 10, 10)[0] == pytest.approx(expected)


def test_warmup_ramps_up_to_the_poly_lr_and_then_follows_it():
    optim = OptimConfig(lr=0.01, poly_power=0.9, warmup_iterations=4)
    poly = [0.01 * (1 - it / 10) ** 0.9 for it in range(10)]
    expected = [p * min(1, (it + 1) / 4) for it, p in enumerate(poly)]
    seen = lrs(optim, 10, 10)[0]
    assert seen == pytest.approx(expected) and seen[3:] == pytest.approx(poly[3:])


@pytest.mark.parametrize("warmup", [0, 4])
def test_a_restored_schedule_goes_on_where_it_stopped(warmup):
    optim = OptimConfig(lr=0.01, warmup_iterations=warmup)
    whole, _ = lrs(optim, 10, 10)
    first, state = lrs(optim, 10, 3)
    assert first + lrs(optim, 10, 7, state)[0] == pytest.approx(whole)


def test_a_negative_warmup_is_refused():
    with pytest.raises(ValueError, match="optim.warmup_iterations must be >= 0"):
        OptimConfig(warmup_iterations=-1)
