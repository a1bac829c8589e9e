"""The peer benchmark behind bench/run_peers.py: one module per system (cnm, cni,
netavark, docker), the phases that measure them, the in-namespace agent, and the
pure statistics and report code (unit-tested in tests/unit/test_bench_stats.py)."""
