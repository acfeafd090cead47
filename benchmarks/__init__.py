"""The benchmark scripts (a package: run them from the repository root as
``python -m benchmarks.run_all`` or ``python -m benchmarks.bench_<name>``)."""
