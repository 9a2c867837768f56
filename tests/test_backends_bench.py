"""`lcal bench backends`: its parts on small workloads, and the command's report and JSON output."""
import json

from lcal import bench
from lcal.cli import main


def test_hf_bench_parts_time_the_same_work():
    result = bench.bench_hf("tiny", n_prompts=4, n=2, max_new_tokens=4, repeats=1)
    assert set(result["hf_seconds"]) == {"reference", "bare_generate", "ours"}
    assert result["hf_speedup_vs_reference"] == result["hf_seconds"]["reference"] / result["hf_seconds"]["ours"]
    assert 2_000_000 < result["hf_parameters"] < 3_500_000  # the ~2-3M-parameter stand-in for the world model


def test_api_bench_counts_requests_at_the_server():
    result = bench.bench_api(n_requests=32, latency=0.02, concurrency=8, n_cached=100)
    assert result["cache_rerun_requests"] == 0 and result["cache_rerun_hits"] == 100
    assert 0 < result["api_concurrency_efficiency"] <= 1.0


def test_bench_command_prints_targets_and_writes_json(tmp_path, monkeypatch, capsys):
    fake = lambda args: {"hf_speedup_vs_reference": 3.0, "hf_overhead_vs_generate": 1.5, "extra": "kept"}
    monkeypatch.setitem(bench.BENCHMARKS, "backends", (fake, bench.BACKEND_TARGETS, "test"))
    assert main(["bench", "backends", "--json", str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    assert "hf_speedup_vs_reference" in out and "ok" in out and "MISSED" in out and "load average" in out
    written = json.loads((tmp_path / "b.json").read_text())
    assert written["extra"] == "kept" and written["targets"]["hf_overhead_vs_generate"] == ["<=", 1.1]
