"""engine.launch: returns rank 0's value, names a failing rank with its traceback."""

from __future__ import annotations

import pytest

import engine
from _dist import exit_on_rank, fail_on_rank


@pytest.mark.timeout(60)
def test_launch_returns_rank_zero_value() -> None:
    assert engine.launch(fail_on_rank, world_size=2, args=(-1, 7), timeout_s=30) == 70


@pytest.mark.timeout(60)
def test_failing_rank_is_named_with_its_traceback() -> None:
    with pytest.raises(engine.LaunchError) as info:
        engine.launch(fail_on_rank, world_size=2, args=(1, 7), timeout_s=30)
    assert info.value.rank == 1
    assert "deliberate failure on rank 1" in info.value.traceback_text
    assert "Traceback" in info.value.traceback_text


@pytest.mark.timeout(60)
def test_rank_dying_without_traceback_is_reported() -> None:
    with pytest.raises(engine.LaunchError, match="rank 1 failed:\nprocess exited with code 3") as info:
        engine.launch(exit_on_rank, world_size=2, args=(1,), timeout_s=30)
    assert info.value.rank == 1
