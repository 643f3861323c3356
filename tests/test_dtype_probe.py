"""The dtype micro-probe: its verdict from timings, and its per-machine cache."""

from __future__ import annotations

import json

import pytest

from emlab import dtype_probe


def test_decide_keeps_bf16_only_when_clearly_faster():
    assert dtype_probe.decide({"float32": 1.0, "bfloat16": 0.5}, True, "m").dtype == "bfloat16"
    tie = dtype_probe.decide({"float32": 1.0, "bfloat16": 1.0 / 1.1}, True, "m")
    assert tie.dtype == "float32" and "1.10x" in tie.reason and "native" in tie.reason
    slow = dtype_probe.decide({"float32": 1.0, "bfloat16": 4.0}, False, "m")
    assert slow.dtype == "float32" and "emulated" in slow.reason and "0.25x" in slow.reason


@pytest.fixture
def counted(tmp_path, monkeypatch):
    monkeypatch.setenv("EMLAB_CACHE", str(tmp_path))
    calls = []

    def fake(dtype, reps, shape):
        calls.append(str(dtype))
        return 1.0 if str(dtype) == "torch.float32" else 0.4

    monkeypatch.setattr(dtype_probe, "_time_step", fake)
    return calls


def test_probe_measures_once_per_machine_and_caches(counted, tmp_path):
    first = dtype_probe.choose_dtype()
    assert first.dtype == "bfloat16" and len(counted) == 2
    assert dtype_probe.choose_dtype() == first and len(counted) == 2  # cached
    files = list((tmp_path / "probe").glob("dtype-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["machine"] == dtype_probe.machine_key()
    dtype_probe.choose_dtype(refresh=True)
    assert len(counted) == 4


def test_damaged_or_other_machine_cache_is_measured_again(counted, monkeypatch):
    dtype_probe.choose_dtype()
    path = dtype_probe._probe_path(dtype_probe.machine_key())
    path.write_text("{not json")
    assert dtype_probe.choose_dtype().dtype == "bfloat16" and len(counted) == 4
    key = dtype_probe.machine_key()
    monkeypatch.setattr(dtype_probe, "machine_key", lambda: key.replace("torch=", "torch=9.9-"))
    dtype_probe.choose_dtype()
    assert len(counted) == 6  # another torch build is another machine


def test_real_probe_runs_small():
    seconds = dtype_probe._time_step(dtype_probe.torch.float32, 1, (8, 16, 32))
    assert seconds > 0
