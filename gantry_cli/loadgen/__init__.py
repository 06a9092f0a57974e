"""The load generator behind `gantry bench load`: profiles, gRPC runner, results, plot.

For a steady load, Triton's perf_analyzer is the reference client (`make tools` installs
it in .tools/bin; `bench/perf_analyzer_compare.py` shows both agree on throughput and p50).
This generator is kept only for what perf_analyzer cannot do: a load that changes over
time (steps, ramps, open or closed loop) with a per-second timeline of sent/ok/errors,
p50/p95, replicas and per-pod shares, and its plot, sent to an InferenceService's Ready
pods as they come and go — what autoscaling is judged by.
"""
