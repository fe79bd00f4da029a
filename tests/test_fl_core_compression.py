"""Uplink quantisation: round-trip error bounds, byte counts, error feedback."""

from __future__ import annotations

import numpy as np
import pytest

from hrc_fl.federated.core.compression import ErrorFeedbackCompressor, dequantize_update, payload_bytes, quantize_update


def _delta(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"a": rng.normal(0, 0.05, (32, 16)).astype(np.float32), "b": rng.normal(0, 1.0, 7).astype(np.float32)}


def test_int8_round_trip_error_is_at_most_half_a_step():
    delta = _delta()
    q = quantize_update(delta, scheme="int8")
    back = dequantize_update(q)
    for name, value in delta.items():
        step = np.abs(value).max() / 127
        assert q.tensors[name].dtype == np.int8
        assert np.abs(back[name] - value).max() <= step / 2 + 1e-7


def test_fp16_round_trip_relative_error():
    delta = _delta()
    back = dequantize_update(quantize_update(delta, scheme="fp16"))
    for name, value in delta.items():
        assert np.abs(back[name] - value).max() <= np.abs(value).max() * 2 ** -10


def test_payload_bytes_per_scheme():
    delta = _delta()  # 512 + 7 values
    assert payload_bytes(quantize_update(delta, scheme="fp32")) == 4 * 519
    assert payload_bytes(quantize_update(delta, scheme="fp16")) == 2 * 519
    assert payload_bytes(quantize_update(delta, scheme="int8")) == 519 + 2 * 4  # + one scale per tensor
    assert payload_bytes(delta) == 4 * 519


def test_all_zero_tensor_survives_int8():
    q = quantize_update({"z": np.zeros(5, np.float32)}, scheme="int8")
    np.testing.assert_array_equal(dequantize_update(q)["z"], np.zeros(5))


def test_error_feedback_keeps_cumulative_error_bounded():
    # the same small delta every round: without feedback a coordinate far below the step is lost forever;
    # with feedback the receiver's running sum tracks the true sum within one quantisation step
    delta = {"w": np.array([1.0, 0.003, -0.002], np.float32)}
    compressor = ErrorFeedbackCompressor(scheme="int8")
    received = np.zeros(3)
    plain = np.zeros(3)
    rounds = 200
    for _ in range(rounds):
        received += dequantize_update(compressor.compress(delta))["w"]
        plain += dequantize_update(quantize_update(delta, scheme="int8"))["w"]
    truth = rounds * delta["w"].astype(np.float64)
    step = 1.0 / 127
    assert np.abs(received - truth).max() <= step
    assert np.abs(plain - truth)[1] > 0.5  # the 0.003 coordinate rounds to 0 without feedback


def test_unknown_scheme_refused():
    with pytest.raises(ValueError, match="unknown compression scheme"):
        quantize_update({"a": np.ones(2)}, scheme="int4")
    with pytest.raises(ValueError):
        ErrorFeedbackCompressor(scheme="bf16")
