"""Benchmarks of leakagent against plain Python and the tools users would pick instead.

    python benchmarks/run.py            # everything, ~20 minutes on 2 cores
    python benchmarks/run.py --quick    # fewer runs, a few minutes: a rough check

Sets up (once) and refreshes the benchmark venvs, runs every scenario with and without the
agent and beside memray, tracemalloc and opentelemetry-instrument, prints a table of medians
and ratios, writes the results to benchmarks/results/latest.json and the generated part of
docs/performance.md (between its GENERATED markers; the rest of the file is left alone).

Scenarios: startup (hyperfine + first line + peak RSS), seed (the boto3 thread-pool workload
of examples/), micro (pyperf, in-process), scale (1,000,000 creations over 10,000 call sites
on 16 threads). Export rows are driven only by the standard OTEL_* variables, against a dummy
OTLP receiver on 127.0.0.1; without the leakagent.outputs.telemetry package they measure the core.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
import report
from harness import BENCH, REPO, Venv, log

SCENARIOS = ("startup", "seed", "micro", "scale")
WARNING_MARK = "leakagent: "  # every agent line on stderr starts so; suspects say "created"
BOTO_SEED = {"buggy": "examples/seed_buggy.py", "correct": "examples/seed_correct.py"}


class Plan:
    """How many runs of what: full or quick."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.startup_hyperfine_runs = 10 if quick else 40
        self.startup_warmup = 1 if quick else 3
        self.startup_own_runs = 4 if quick else 15
        self.seed_runs = 2 if quick else 7
        self.tracemalloc_seed = ("correct",) if quick else ("correct", "buggy")
        self.pyperf_args = ["--processes", "4" if quick else "12", "--values", "3"]
        self.scale_runs = 1 if quick else 3
        self.scale_memory_creations = 250_000 if quick else 1_000_000
        self.scale_churn = not quick


class Context:
    def __init__(self, args: argparse.Namespace) -> None:
        self.plan = Plan(args.quick)
        self.main = Venv(Path(args.venv), "main", system_site=True)
        self.clean = None if args.no_clean_venv else Venv(Path(args.clean_venv), "clean", False)
        self.tmp = Path(tempfile.mkdtemp(prefix="leakagent-bench-"))
        self.sink: harness.Sink | None = None
        self.prometheus_port = harness.free_port()
        self.telemetry = False


# -- the tools compared -------------------------------------------------------------------------


def tools(ctx: Context, venv: Venv, *, startup: bool) -> list[tuple[str, str, object, dict]]:
    """(key, label, argv builder, extra env) for each way of running a Python program."""
    python = venv.python
    site_dir = venv.sitecustomize_dir()
    agent = {"PYTHONPATH": site_dir, "LEAKAGENT_SUMMARY": "never"}
    sink = ctx.sink
    assert sink is not None
    otlp_grpc = {
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.grpc_endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
    }
    otlp_http = {
        **otlp_grpc,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.http_endpoint,
    }
    prometheus = {
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(ctx.prometheus_port),
    }
    no_export = {
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    memray_out = str(ctx.tmp / f"memray-{venv.name}.bin")
    rows: list[tuple[str, str, object, dict]] = [
        ("plain", "plain python", lambda a: [python, *a], {}),
        ("container", "leakagent, container mode (PYTHONPATH)", lambda a: [python, *a], agent),
        (
            "launcher",
            "leakagent launcher (leakagent python ...)",
            lambda a: [venv.tool("leakagent"), python, *a],
            {"LEAKAGENT_SUMMARY": "never"},
        ),
        (
            "otlp",
            "leakagent + OTLP/gRPC export",
            lambda a: [python, *a],
            {**agent, **otlp_grpc},
        ),
    ]
    if startup:
        rows += [
            (
                "otlp-http",
                "leakagent + OTLP/HTTP export",
                lambda a: [python, *a],
                {**agent, **otlp_http},
            ),
            (
                "prometheus",
                "leakagent + Prometheus exporter",
                lambda a: [python, *a],
                {**agent, **prometheus},
            ),
        ]
    rows += [
        (
            "otel-instrument",
            "opentelemetry-instrument (exporters none)",
            lambda a: [venv.tool("opentelemetry-instrument"), python, *a],
            no_export,
        ),
    ]
    if startup:
        rows.append(
            (
                "otel-instrument-otlp",
                "opentelemetry-instrument + OTLP/gRPC",
                lambda a: [venv.tool("opentelemetry-instrument"), python, *a],
                otlp_grpc,
            )
        )
    rows.append(
        (
            "memray",
            "memray run",
            lambda a: [venv.tool("memray"), "run", "-q", "-f", "-o", memray_out, *a],
            {},
        )
    )
    if not startup:
        rows.insert(
            2,
            (
                "container-t10",
                "leakagent, LEAKAGENT_THRESHOLD=10",
                lambda a: [python, *a],
                {**agent, "LEAKAGENT_THRESHOLD": "10"},
            ),
        )
        rows.append(
            (
                "tracemalloc",
                "python -X tracemalloc=25",
                lambda a: [python, "-X", "tracemalloc=25", *a],
                {},
            )
        )
    return rows


# -- scenario 1: start-up ----------------------------------------------------------------------


def scenario_startup(ctx: Context) -> dict[str, object]:
    venvs = [ctx.main] + ([ctx.clean] if ctx.clean is not None else [])
    out: dict[str, object] = {}
    plan = ctx.plan
    for venv in venvs:
        log(f"start-up in the {venv.name} venv")
        rows = tools(ctx, venv, startup=True)
        base = harness.child_env_base(venv)
        commands = [(label, build(["-c", "pass"]), extra) for _, label, build, extra in rows]
        timed = harness.hyperfine(
            commands,
            base_env=base,
            runs=plan.startup_hyperfine_runs,
            warmup=plan.startup_warmup,
            cwd=ctx.tmp,
        )
        # first line and peak RSS: our own runner, interleaved
        first_line_program = ["-c", "print('first line', flush=True)"]
        samples: dict[str, list[harness.RunResult]] = {key: [] for key, *_ in rows}
        for round_ in range(plan.startup_own_runs):
            order = rows[round_ % len(rows) :] + rows[: round_ % len(rows)]
            for key, _label, build, extra in order:
                result = harness.run_once(build(first_line_program), {**base, **extra}, cwd=ctx.tmp)
                samples[key].append(result)
        table = []
        for key, label, _build, extra in rows:
            runs = samples[key]
            table.append(
                {
                    "key": key,
                    "label": label,
                    "env": extra,
                    "exit_median": timed[label]["median"],
                    "exit_stddev": timed[label]["stddev"],
                    "exit_min": timed[label]["min"],
                    "first_line_median": _median(r.first_stdout for r in runs),
                    "cpu_median": _median(r.cpu for r in runs),
                    "maxrss_kib_median": _median(r.maxrss_kib for r in runs),
                    "failures": sum(1 for r in runs if r.rc != 0),
                }
            )
        out[venv.name] = {
            "python": venv.python,
            "rows": table,
            "importtime": importtime(venv),
        }
    return out


def importtime(venv: Venv) -> list[tuple[str, int]]:
    """Modules that container mode imports on top of plain ``python -c pass``, with their
    self time in µs (median of 5 ``-X importtime`` runs), largest first."""
    site_dir = venv.sitecustomize_dir()

    def modules(extra: dict[str, str]) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for _ in range(5):
            result = subprocess.run(
                [venv.python, "-X", "importtime", "-c", "pass"],
                env={**harness.child_env_base(venv), **extra},
                capture_output=True,
                text=True,
                cwd=tempfile.gettempdir(),
            )
            for line in result.stderr.splitlines():
                if not line.startswith("import time:") or "self [us]" in line:
                    continue
                self_us, _cumulative, name = line[len("import time:") :].split("|")
                found.setdefault(name.strip(), []).append(int(self_us))
        return found

    plain = modules({})
    agent = modules({"PYTHONPATH": site_dir})
    extra = [
        (name, int(statistics.median(times))) for name, times in agent.items() if name not in plain
    ]
    extra.sort(key=lambda item: -item[1])
    return extra


# -- scenario 2: the seed workload -------------------------------------------------------------


def scenario_seed(ctx: Context) -> dict[str, object]:
    venv = ctx.main
    rows = [row for row in tools(ctx, venv, startup=False) if row[0] != "launcher"]
    base = harness.child_env_base(venv)
    plan = ctx.plan
    samples: dict[tuple[str, str], list[harness.RunResult]] = {}
    log(f"seed workload: {plan.seed_runs} interleaved runs of each variant")
    timed_rows = [row for row in rows if row[0] != "tracemalloc"]
    for round_ in range(plan.seed_runs):
        for program, path in BOTO_SEED.items():
            order = timed_rows[round_ % len(timed_rows) :] + timed_rows[: round_ % len(timed_rows)]
            for key, _label, build, extra in order:
                result = harness.run_once(
                    build([path]), {**base, **extra}, stderr_match=WARNING_MARK
                )
                samples.setdefault((key, program), []).append(result)
        log(f"  round {round_ + 1}/{plan.seed_runs} done")
    for key, _label, build, extra in rows:
        if key != "tracemalloc":
            continue
        for program in plan.tracemalloc_seed:
            log(f"seed workload under -X tracemalloc=25 ({program}, one run)")
            result = harness.run_once(build([BOTO_SEED[program]]), {**base, **extra})
            samples.setdefault((key, program), []).append(result)
    # what a memray user does next to learn where the clients come from
    memray_next = None
    memray_file = ctx.tmp / "memray-main.bin"
    if memray_file.exists():
        t0 = time.perf_counter()
        subprocess.run(
            [venv.tool("memray"), "summary", str(memray_file)],
            capture_output=True,
            env=base,
        )
        memray_next = time.perf_counter() - t0
    table = []
    for key, label, _build, extra in rows:
        for program in BOTO_SEED:
            runs = samples.get((key, program))
            if not runs:
                continue
            matches = [r.first_match for r in runs if r.first_match is not None]
            table.append(
                {
                    "key": key,
                    "label": label,
                    "program": program,
                    "env": extra,
                    "runs": len(runs),
                    "wall_median": _median(r.wall for r in runs),
                    "wall_min": min(r.wall for r in runs),
                    "cpu_median": _median(r.cpu for r in runs),
                    "maxrss_kib_median": _median(r.maxrss_kib for r in runs),
                    "first_warning_median": _median(matches) if matches else None,
                    "failures": sum(1 for r in runs if r.rc != 0),
                }
            )
    sample_warning = next(
        (
            line
            for r in samples.get(("container", "buggy"), [])
            for line in r.stderr.splitlines()
            if line.startswith(WARNING_MARK)
        ),
        None,
    )
    return {
        "rows": table,
        "memray_summary_seconds": memray_next,
        "sample_warning": sample_warning,
    }


# -- scenario 3: micro-benchmarks ----------------------------------------------------------------


def scenario_micro(ctx: Context) -> dict[str, object]:
    venv = ctx.main
    base = harness.child_env_base(venv)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for mode in ("plain", "agent"):
        log(f"micro-benchmarks (pyperf), {mode}")
        output = ctx.tmp / f"micro-{mode}.json"
        command = [venv.python, str(BENCH / "micro.py"), "--quiet", "-o", str(output)]
        command += ctx.plan.pyperf_args
        if mode == "agent":
            command.append("--agent")
        subprocess.run(command, check=True, env=base, cwd=ctx.tmp, stdout=subprocess.DEVNULL)
        summary = venv.run_python(
            "import json, pyperf\n"
            f"suite = pyperf.BenchmarkSuite.load({str(output)!r})\n"
            "print(json.dumps({b.get_name(): {'median': b.median(), 'stdev': b.stdev(),"
            " 'values': len(b.get_values())} for b in suite.get_benchmarks()}))\n"
        )
        results[mode] = json.loads(summary)
    return results


# -- scenario 4: scale --------------------------------------------------------------------------


def scenario_scale(ctx: Context) -> dict[str, object]:
    venv = ctx.main
    base = harness.child_env_base(venv)
    agent = {**base, "PYTHONPATH": venv.sitecustomize_dir(), "LEAKAGENT_SUMMARY": "never"}
    script = [venv.python, str(BENCH / "scale.py")]

    def run(env: dict[str, str], *extra: str) -> dict[str, object]:
        result = subprocess.run(
            [*script, *extra], env=env, capture_output=True, text=True, cwd=ctx.tmp
        )
        if result.returncode != 0:
            raise RuntimeError(f"scale.py failed: {result.stderr[-2000:]}")
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    out: dict[str, object] = {"plain": [], "agent": []}
    for round_ in range(ctx.plan.scale_runs):
        log(f"scale: round {round_ + 1}/{ctx.plan.scale_runs}, plain and agent")
        out["plain"].append(run(base))  # type: ignore[attr-defined]
        out["agent"].append(run(agent))  # type: ignore[attr-defined]
    log("scale: agent memory (tracemalloc of leakagent's own allocations)")
    out["memory"] = run(agent, "--tracemalloc", "--creations", str(ctx.plan.scale_memory_creations))
    if ctx.plan.scale_churn:
        log("scale: agent memory with a new pool of 16 threads per phase")
        out["memory_thread_churn"] = run(agent, "--tracemalloc", "--thread-churn")
        log("scale: 50,000 call sites (over LEAKAGENT_MAX_SITES)")
        out["memory_many_sites"] = run(agent, "--tracemalloc", "--sites", "50000")
    return out


# -- driver ---------------------------------------------------------------------------------------


def _median(values) -> float:  # type: ignore[no-untyped-def]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog=(
            "Needs hyperfine (apt-get install hyperfine) and network access to PyPI the first "
            "time (to create the venvs). Run it on a quiet machine: other processes show up "
            "in every figure."
        ),
    )
    parser.add_argument("--quick", action="store_true", help="fewer runs (a few minutes)")
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios to run (default: all of {','.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--venv",
        default="/work/venvs/bench",
        help="main venv, with system site-packages (created if missing; default %(default)s)",
    )
    parser.add_argument(
        "--clean-venv",
        default="/work/venvs/bench-clean",
        help="venv without system site-packages for the start-up rows (default %(default)s)",
    )
    parser.add_argument(
        "--no-clean-venv", action="store_true", help="start-up in the main venv only"
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="do not reinstall this tree into the venvs (they must exist)",
    )
    parser.add_argument(
        "--results",
        default=str(BENCH / "results" / "latest.json"),
        help="where to write the raw results (default %(default)s)",
    )
    parser.add_argument(
        "--doc",
        default=str(REPO / "docs" / "performance.md"),
        help="the document whose generated part is rewritten (default %(default)s)",
    )
    parser.add_argument("--no-doc", action="store_true", help="print only; write no files")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="re-render the table and the document from --results, without measuring",
    )
    args = parser.parse_args(argv)

    if args.report_only:
        results = json.loads(Path(args.results).read_text())
        text = report.render(results)
        print(text)
        if not args.no_doc:
            report.write_doc(Path(args.doc), text)
        return 0

    scenarios = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if "startup" in scenarios and harness.hyperfine_version() == "not installed":
        parser.error("hyperfine is not installed (apt-get install hyperfine)")

    ctx = Context(args)
    started = time.time()
    ctx.main.setup(harness.MAIN_REQUIREMENTS, reinstall=not args.no_install)
    if ctx.clean is not None and "startup" in scenarios:
        try:
            ctx.clean.setup(harness.CLEAN_REQUIREMENTS, reinstall=not args.no_install)
        except subprocess.CalledProcessError as exc:
            log(f"cannot set up the clean venv ({exc}); start-up in the main venv only")
            ctx.clean = None
    ctx.telemetry = ctx.main.has_telemetry()
    if not ctx.telemetry:
        log(
            "leakagent.outputs.telemetry is not installed: the export rows run the agent core only "
            "(the OTEL_* variables are set, nothing reads them yet)"
        )
    results: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "mode": "quick" if args.quick else "full",
        "machine": harness.machine(),
        "load_before": harness.load_average(),
        "revision": harness.git_revision(),
        "versions": {
            **ctx.main.versions(),
            "hyperfine": harness.hyperfine_version(),
            "python (main venv)": ctx.main.run_python("import sys; print(sys.version.split()[0])"),
        },
        "telemetry": ctx.telemetry,
        "scenarios": {},
        "failed": {},
    }
    ctx.sink = harness.Sink(ctx.main)
    try:
        runners = {
            "startup": scenario_startup,
            "seed": scenario_seed,
            "micro": scenario_micro,
            "scale": scenario_scale,
        }
        for name in scenarios:
            t0 = time.time()
            try:
                data = runners[name](ctx)
            except Exception as exc:  # one broken scenario must not lose the others
                log(f"scenario {name} failed: {type(exc).__name__}: {exc}")
                results["failed"][name] = f"{type(exc).__name__}: {exc}"  # type: ignore[index]
                continue
            data["seconds"] = time.time() - t0
            data["load_after"] = harness.load_average()
            results["scenarios"][name] = data  # type: ignore[index]
        results["sink_counts"] = ctx.sink.counts()
    finally:
        ctx.sink.stop()
    results["load_after"] = harness.load_average()
    results["seconds"] = time.time() - started
    text = report.render(results)
    print(text)
    if not args.no_doc:
        path = Path(args.results)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1, default=str) + "\n")
        report.write_doc(Path(args.doc), text)
        log(f"wrote {path} and {args.doc}")
    log(f"done in {results['seconds'] / 60:.1f} minutes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
