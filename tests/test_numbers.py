"""The one check of whole-number settings: what it accepts, what it refuses and how it
says so; and that the settings built on it share it."""

from __future__ import annotations

import numpy as np
import pytest

import ndframework as ndf
from ndframework._numbers import as_int, is_integer, minimum_words
from ndframework.boss import RetryPolicy


@pytest.mark.parametrize("value", [1, 7, 2**40, np.int64(3), np.uint8(255), np.int32(1)])
def test_positive_ints_and_numpy_integers_are_accepted_as_python_ints(value):
    checked = as_int(value, "workers", minimum=1)
    assert checked == int(value) and type(checked) is int


@pytest.mark.parametrize(
    "value", [0, -3, np.int64(0), True, False, np.bool_(True), 2.0, "4", None, (1,)]
)
def test_everything_else_is_refused_naming_the_setting_and_the_value(value):
    with pytest.raises(ndf.ConfigError) as info:
        as_int(value, "workers", minimum=1)
    assert str(info.value) == f"workers must be a positive integer, got {value!r}"
    assert info.value.value is value


def test_zero_and_none_are_valid_only_where_they_mean_something():
    assert as_int(0, "max_failures", minimum=0, zero="no limit") == 0
    assert as_int(None, "max_failures", minimum=0, none="for the default") is None
    with pytest.raises(ndf.ConfigError, match=r"^max_failures must be a non-negative integer "
                                              r"\(0: no limit\) or None for the default, "
                                              r"got -1$"):
        as_int(-1, "max_failures", minimum=0, zero="no limit", none="for the default")
    with pytest.raises(ndf.ConfigError, match=r"^n must be an integer of at least 2, got 1$"):
        as_int(1, "n", minimum=2)


def test_bools_are_not_integers_and_numpy_integers_are():
    assert [is_integer(v) for v in (3, np.int16(3), True, np.bool_(False), 3.0, "3")] == [
        True, True, False, False, False, False]
    assert [minimum_words(m) for m in (0, 1, 5)] == ["non-negative", "positive", "at least 5"]


@pytest.mark.parametrize("make, message", [
    (lambda v: ndf.Pipeline(ndf.InMemorySource({"a": np.zeros((1, 1, 1))}), len,
                            executor="serial", max_attempts=v), "max_attempts"),
    (lambda v: RetryPolicy(max_attempts=v), "max_attempts"),
    (lambda v: ndf.ZarrSource("nowhere.zarr", chunk_cache_bytes=v), "chunk_cache_bytes"),
])
def test_the_settings_refuse_bools_and_take_numpy_integers_alike(make, message):
    with pytest.raises(ndf.ConfigError, match=rf"^{message} must be .* got True$"):
        make(True)
    made = make(np.int64(2))
    assert getattr(made, message, None) == 2 and type(getattr(made, message)) is int
