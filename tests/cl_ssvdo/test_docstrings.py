"""The runnable examples in the adapter's docstrings."""

import doctest

import pytest

from cl_ssvdo import baselines, budget
from cl_ssvdo.ssvdo import decompose, inject, layer, rotations, serial


@pytest.mark.parametrize("module", [rotations, decompose, layer, inject, serial, budget, baselines])
def test_docstring_examples_run(module) -> None:
    result = doctest.testmod(module, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0
