"""`gantry bench load`: gRPC load on a profile, live progress, JSON results and a plot.

For a steady load use perf_analyzer, the reference client (.tools/bin/perf_analyzer);
this command is for time-varying profiles with a timeline and plot (see the package).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from gantry_cli.loadgen.profile import ProfileError, parse_profile

_PROFILE_HELP = (
    "Load over time: SECONDS:LOAD points, LOAD a rate ('200rps', open loop) or clients "
    "('16c', closed loop); '~' ramps from the previous point; end with ':0'. "
    "E.g. '0:20rps,30:200rps,90:0'."
)


_EPILOG = """\b
Profiles:
  0:20rps,30:200rps,90:0       20 req/s, a step to 200 req/s at 30 s, stop at 90 s
  0:10,60:~300,120:~10,150:0   ramp to 300 req/s over a minute, and back down
  0:2c,20:32c,80:0             2, then 32 concurrent clients (closed loop)

\b
Targets: an InferenceService (its Ready pods, re-read every second from the
EndpointSlices of <name>-headless; requests go round-robin, one channel per pod)
or --url host:port. Results: per-second sent/ok/errors/p50/p95/replicas and the
share of requests per pod (JSON), and a PNG plot of RPS, p95 and replicas.
"""


def _progress_line(tick: Any) -> str:
    p50 = "-" if tick.p50_ms is None else f"{tick.p50_ms:.1f}"
    p95 = "-" if tick.p95_ms is None else f"{tick.p95_ms:.1f}"
    replicas = "?" if tick.replicas is None else str(tick.replicas)
    return (
        f"t={tick.t:5.0f}s  load {tick.load:7.1f}  ok/s {tick.ok_per_second:7.1f}  "
        f"errors {tick.errors:4d}  p50 {p50:>7} ms  p95 {p95:>7} ms  "
        f"replicas {replicas:>2} (ready pods {tick.pods})  in flight {tick.in_flight}"
    )


@click.command("load", epilog=_EPILOG)
@click.argument("service", required=False)
@click.option("--url", "urls", multiple=True, help="host:port of Triton gRPC (repeatable).")
@click.option("--profile", "profile_text", required=True, help=_PROFILE_HELP)
@click.option("--duration", type=click.FloatRange(min=0.1), default=None, help="Stop after S s.")
@click.option("--model", default=None, help="Model name (default: the service's name).")
@click.option("--namespace", "-n", default="default", show_default=True)
@click.option(
    "--kubeconfig",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Kubeconfig (default: $KUBECONFIG or in-cluster).",
)
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(0.01, 600))
@click.option("--max-in-flight", default=2000, show_default=True, type=click.IntRange(1))
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("load-results.json"),
    show_default=True,
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PNG plot (default: the output path with .png).",
)
@click.option("--slo-ms", type=float, default=None, help="Draw this latency target on the plot.")
@click.option("--quiet", "-q", is_flag=True, help="No live progress.")
def load(
    service: str | None,
    urls: tuple[str, ...],
    profile_text: str,
    duration: float | None,
    model: str | None,
    namespace: str,
    kubeconfig: Path | None,
    timeout: float,
    max_in_flight: int,
    output: Path,
    plot_path: Path | None,
    slo_ms: float | None,
    quiet: bool,
) -> None:
    """Send gRPC load to SERVICE (an InferenceService) or --url targets, following --profile.

    For a steady load, Triton's perf_analyzer (.tools/bin/perf_analyzer) is the reference
    client; this command is for load that changes over time, with a timeline and a plot.
    """
    from gantry_cli.loadgen.endpoints import Endpoints, FixedEndpoints, ServiceEndpoints
    from gantry_cli.loadgen.report import plot, results_document, write_json
    from gantry_cli.loadgen.runner import LoadRunner, random_inputs
    from gantry_cli.predict import PredictError, _kube_client, model_signature

    if bool(service) == bool(urls):
        raise click.UsageError("give either an InferenceService name or --url host:port")
    try:
        profile = parse_profile(profile_text, duration=duration)
    except ProfileError as err:
        raise click.BadParameter(str(err), param_hint="--profile") from err

    endpoints: Endpoints
    if service:
        try:
            kube = _kube_client(kubeconfig)
        except Exception as err:  # kubeconfig problems come in many exception types
            raise click.ClickException(f"cannot reach the Kubernetes API: {err}") from err
        endpoints = ServiceEndpoints(kube, service, namespace)
        model = model or service
        target = f"{namespace}/{service}"
    else:
        if not model:
            raise click.UsageError("--model is required with --url")
        endpoints = FixedEndpoints(urls)
        target = ",".join(urls)

    first = asyncio.run(endpoints.refresh())
    if not first:
        raise click.ClickException(f"{target}: no ready Triton pod to send load to")
    try:
        signature = model_signature(first[0].address, model, timeout=timeout)
        inputs = random_inputs(signature)
    except (PredictError, ValueError) as err:
        raise click.ClickException(str(err)) from err

    from rich.console import Console

    console = Console(stderr=True, highlight=False, soft_wrap=True)

    def on_tick(tick: Any) -> None:
        if not quiet:
            console.print(_progress_line(tick))

    runner = LoadRunner(
        profile,
        endpoints,
        model,
        inputs,
        timeout=timeout,
        max_in_flight=max_in_flight,
        on_tick=on_tick,
    )
    result = asyncio.run(runner.run())
    document = results_document(
        result, target=target, model=model, profile=profile_text, kind=profile.kind
    )
    write_json(document, output)
    png = plot(document, plot_path or output.with_suffix(".png"), slo_ms=slo_ms)
    s = document["summary"]
    click.echo(
        f"{s['sent']} sent, {s['ok']} ok, {s['errors']} errors in {s['duration_s']:.1f} s; "
        f"p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms, p99 {s['p99_ms']} ms"
    )
    if document["pod_share"]:
        shares = ", ".join(f"{pod} {share:.1%}" for pod, share in document["pod_share"].items())
        click.echo(f"share per pod: {shares}")
    click.echo(f"results: {output}  plot: {png}")
