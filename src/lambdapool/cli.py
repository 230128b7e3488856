"""The ``lambdapool`` command line."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from ._deploy import route_timeout_warnings
from ._errors import AppLoadError
from ._limits import API_GATEWAY_TIMEOUT_S, ASYNC_RETRY_DELAY_S, KEEP_WARM_S
from .emulator import Emulator
from .emulator.http._console import log_to_console
from .emulator.http._server import ConnectionLimits, default_max_connections
from .emulator.tabpy._store import SERVICE_ID as TABPY_SERVICE
from .emulator.work._aws import AwsMode
from .emulator.work._tasks import Retention


def _banner(emulator: Emulator) -> str:
    lines = [
        f"lambdapool {__import__('lambdapool').__version__}: serving {emulator.project_dir} (stage {emulator.stage})",
        f"Serving on {emulator.url}",
        "",
    ]
    for service in emulator.services.values():
        if service.service_id == TABPY_SERVICE and not service.endpoints:
            continue  # listed below
        keys = " (API key required)" if service.api_keys else ""
        lines.append(f"service {service.service_id}{keys}")
        for runtime in service.endpoints.values():
            spec = runtime.spec
            pool = spec.pool
            trigger = spec.trigger
            what = (
                f"  POST {emulator.url}/public/api/v1/{spec.service_id}/{spec.endpoint_id}/run"
                if trigger is None
                else f"  {spec.endpoint_id}: on {trigger.source}"
            )
            lines.append(
                f"{what}   "
                f"pool floor={pool.floor} cruise={pool.cruise} ceil={pool.ceil} queue={pool.queue} "
                f"timeout_ms={pool.timeout_ms}  timeout_s={spec.timeout_s} memory_mb={spec.memory_mb}"
            )
    lines += _app_lines(emulator)
    lines.append(_tabpy_line(emulator))
    aws = {
        AwsMode.MOTO: f"local AWS (moto): {emulator.aws.endpoint_url}",
        AwsMode.REAL: "AWS: your real account (--aws real)",
        AwsMode.NONE: "AWS: none (--aws none)",
    }[emulator.aws.mode]
    lines += [
        "",
        aws,
        f"status: {emulator.url}/__lambdapool__/status   metrics: {emulator.url}/metrics",
        *route_timeout_warnings(
            (runtime.spec for runtime in emulator.catalog.app_runtimes()), emulator.gateway_timeout_s
        ),
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def _tabpy_line(emulator: Emulator) -> str:
    """How TabPy's API is served: open or behind a password file, deploying and /evaluate on or off."""
    if emulator.passwords is None:
        access = "open to all (no --pwd-file)"
    else:
        access = f"for the users of {emulator.passwords.path}"
    deploy = "deploy and /evaluate on" if emulator.allow_deploy else "deploy and /evaluate off (--allow-deploy)"
    return f"TabPy API: {emulator.url}/info, /query/<name>  {access}; {deploy}"


def _app_lines(emulator: Emulator) -> list[str]:
    """The app's own routes with the API handler's pool, and what is not emulated."""
    catalog = emulator.catalog
    lines: list[str] = []
    if catalog.api_handler is not None:
        spec = catalog.api_handler.spec
        pool = spec.pool
        lines.append(
            f"app routes (function api_handler: pool floor={pool.floor} cruise={pool.cruise} ceil={pool.ceil} "
            f"queue={pool.queue}  timeout_s={spec.timeout_s} memory_mb={spec.memory_mb})"
        )
        for path, methods in catalog.app_routes.routes:
            lines.append(f"  {','.join(methods)} {emulator.url}{path}")
    if catalog.app_routes.not_emulated:
        lines.append(
            "not emulated (chalice local does not run them either): " + ", ".join(catalog.app_routes.not_emulated)
        )
    return lines


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def local(args: argparse.Namespace) -> int:
    try:
        emulator = _emulator_of(args)
    except (ValueError, OSError) as exc:  # a password file that cannot be used, --allow-deploy without one
        print(f"lambdapool: cannot start: {exc}", file=sys.stderr)
        return 2
    console = log_to_console()
    # Ctrl-C and SIGTERM both stop cleanly; SIGINT is set explicitly because a shell starts background
    # jobs with it ignored, and Python keeps it ignored.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        emulator.start()
    except (AppLoadError, ValueError, OSError) as exc:
        console.stop()  # what start-up logged comes first
        print(f"lambdapool: cannot start: {exc}", file=sys.stderr)
        return 2
    except BaseException:
        console.stop()
        raise
    try:
        print(_banner(emulator), flush=True)
        emulator.serve_forever()  # returns on Ctrl-C or SIGTERM (Werkzeug's loop takes the KeyboardInterrupt)
    except KeyboardInterrupt:
        pass
    finally:
        pipelines = sum(len(runtime.pipelines()) for runtime in emulator.catalog.runtimes())
        print(f"\nlambdapool: stopping: ending {pipelines} pipelines and every process they started", flush=True)
        emulator.close()
        console.stop()  # what was logged until now is written
        print("lambdapool: stopped", flush=True)
    return 0


def _emulator_of(args: argparse.Namespace) -> Emulator:
    return Emulator(
        args.project_dir,
        host=args.host,
        port=args.port,
        stage=args.stage,
        cold_start_delay_ms=args.cold_start_delay_ms,
        state_dir=args.state_dir,
        aws=args.aws,
        connection_limits=ConnectionLimits(max_connections=args.max_connections),
        task_retention=Retention(max_age_s=args.task_retention_hours * 3600, max_bytes=args.task_store_mb * 2**20),
        async_retry_delay_s=args.async_retry_delay_s,
        keep_warm_s=args.keep_warm_s,
        freeze=not args.no_freeze,
        fast_cold_starts=args.fast_cold_starts,
        gateway_timeout_s=args.gateway_timeout_s,
        reload=not args.no_reload,
        allow_deploy=args.allow_deploy,
        pwd_file=args.pwd_file,
    )


def config(args: argparse.Namespace) -> int:
    from ._deploy import configure

    try:
        result = configure(args.project_dir, args.stage, provisioned=args.provisioned)
    except (AppLoadError, ValueError, OSError) as exc:
        print(f"lambdapool config: {exc}", file=sys.stderr)
        return 2
    for line in result.changes:
        print(line)
    if not result.changes:
        print(f"lambdapool config: {args.project_dir} is up to date for stage {args.stage}")
    print("next:")
    for step in result.next_steps:
        print(f"  {step}")
    return 0


def test_queries(args: argparse.Namespace) -> int:
    """Play the project's test queries against ``--url`` or an emulator started for them; 1 if one failed."""
    import tempfile
    import time
    from pathlib import Path

    from .emulator.project._test_queries import TEST_QUERIES_DIR, TestQueryError, load_project, play

    project = Path(args.project_dir)
    try:
        if not (project / "app.py").is_file():
            raise TestQueryError(f"{project} is not a Chalice project (it has no app.py)")
        queries = load_project(project)
        if not queries:
            raise TestQueryError(f"no test queries in {project / TEST_QUERIES_DIR} (<service>/<endpoint>.json)")
    except TestQueryError as exc:
        print(f"lambdapool test-queries: {exc}", file=sys.stderr)
        return 2
    keys: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        url = args.url
        if url is None:
            state_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="lambdapool-test-queries-"))
            emulator = Emulator(project, port=0, stage=args.stage, state_dir=state_dir)
            stack.callback(emulator.close)
            try:
                emulator.start()
            except AppLoadError as exc:
                print(f"lambdapool test-queries: cannot start {project}:\n{exc}", file=sys.stderr)
                return 2
            emulator.serve_in_thread()
            url = emulator.url
            keys = {sid: service.api_keys[0] for sid, service in emulator.services.items() if service.api_keys}
        where = "an emulator started for them" if args.url is None else "a running server"
        print(f"playing {len(queries)} test queries of {project} against {url} ({where})", flush=True)
        started = time.perf_counter()
        failed = 0
        for query in queries:
            key = args.api_key or keys.get(query.service)
            outcome = play(query, url, {"Authorization": f"Bearer {key}"} if key else None)
            failed += not outcome.passed
            print(outcome.line(), flush=True)
        took = time.perf_counter() - started
        print(f"{len(queries) - failed} passed, {failed} failed in {took:.2f} s", flush=True)
    return 1 if failed else 0


def check_package(args: argparse.Namespace) -> int:
    from ._deploy import package_size

    size = package_size(args.zip)
    print(size.report())
    return 1 if size.over_limit else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lambdapool", description="Function endpoints with real pools.")
    parser.add_argument("--version", action="version", version=f"lambdapool {__import__('lambdapool').__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run_local = commands.add_parser("local", help="serve a project's endpoints with the local emulator")
    run_local.add_argument("project_dir", nargs="?", default=".", help="the Chalice project (holding app.py)")
    run_local.add_argument("--port", type=int, default=8000, help="port to listen on; 0 picks a free one (8000)")
    run_local.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    run_local.add_argument("--stage", default="dev", help="the Chalice stage whose settings apply (dev)")
    run_local.add_argument(
        "--cold-start-delay-ms",
        type=int,
        default=0,
        metavar="MS",
        help="extra delay added to every pipeline start, to emulate a provider's cold-start overhead (0)",
    )
    run_local.add_argument(
        "--state-dir",
        default=None,
        metavar="DIR",
        help="where submitted tasks' state and results are kept (PROJECT_DIR/.lambdapool)",
    )
    run_local.add_argument(
        "--aws",
        choices=[mode.value for mode in AwsMode],
        default=AwsMode.MOTO.value,
        help="the AWS pipelines and S3 triggers use: a local moto server (moto), your real account (real), "
        "or none (moto)",
    )
    run_local.add_argument(
        "--max-connections",
        type=int,
        default=default_max_connections(),
        metavar="N",
        help="connections served at once; more are answered 503 Overloaded at once (half the descriptor limit, "
        "at most 1000)",
    )
    run_local.add_argument(
        "--fast-cold-starts",
        action="store_true",
        help="do not add to cold starts what a fresh interpreter spends starting and importing the app's "
        "libraries, which the fork server preloads (faster test suites; Lambda's Init pays for them)",
    )
    run_local.add_argument(
        "--no-reload",
        action="store_true",
        help="do not reload when app.py, chalicelib/, the pool files or .chalice/config.json change",
    )
    run_local.add_argument(
        "--no-freeze",
        action="store_true",
        help="let idle pipelines run between calls (Lambda freezes them: background threads stop)",
    )
    run_local.add_argument(
        "--keep-warm-s",
        type=float,
        default=KEEP_WARM_S,
        metavar="S",
        help="how long a scale-to-zero pool (floor=0, cruise=0) keeps its last pipeline warm; 0: always cold (300)",
    )
    run_local.add_argument(
        "--gateway-timeout-s",
        type=_positive_float,
        default=API_GATEWAY_TIMEOUT_S,
        metavar="S",
        help='API Gateway\'s integration timeout: a route\'s caller gets 504 {"message": "Endpoint request timed '
        'out"} past it while the call goes on (29, the default of REST APIs; set what your quota allows)',
    )
    run_local.add_argument(
        "--async-retry-delay-s",
        type=float,
        default=ASYNC_RETRY_DELAY_S,
        metavar="S",
        help="wait before retrying a failed asynchronous invocation; the second retry waits twice as long "
        "(60, as Lambda; lower it for tests)",
    )
    run_local.add_argument(
        "--task-retention-hours",
        type=float,
        default=Retention.max_age_s / 3600,
        metavar="H",
        help="finished tasks are kept this long (168)",
    )
    run_local.add_argument(
        "--task-store-mb",
        type=int,
        default=Retention.max_bytes // 2**20,
        metavar="MB",
        help="the most disk finished tasks' records may take; the oldest go first (1024)",
    )
    run_local.add_argument(
        "--pwd-file",
        default=None,
        metavar="FILE",
        help="a TabPy password file (tabpy-user add writes one): TabPy's routes then need one of its users",
    )
    run_local.add_argument(
        "--allow-deploy",
        action="store_true",
        help="let the users of --pwd-file deploy functions with TabPy's client and run /evaluate's scripts "
        "(code sent over HTTP: off by default)",
    )
    run_local.set_defaults(handler=local)

    run_config = commands.add_parser(
        "config", help="write each endpoint's Lambda settings into .chalice/config.json and vendor the runtime"
    )
    run_config.add_argument("project_dir", nargs="?", default=".", help="the Chalice project (holding app.py)")
    run_config.add_argument("--stage", default="dev", help="the Chalice stage to configure (dev)")
    run_config.add_argument(
        "--provisioned",
        action="store_true",
        help="opt the stage in to provisioned concurrency for the floors (see infra/provisioned-concurrency.yaml)",
    )
    run_config.set_defaults(handler=config)

    run_queries = commands.add_parser(
        "test-queries",
        help="play the project's test queries (test_queries/<service>/<endpoint>.json); exit 1 when one fails",
    )
    run_queries.add_argument("project_dir", nargs="?", default=".", help="the Chalice project (holding app.py)")
    run_queries.add_argument(
        "--url", help="the emulator (or deployed API) to play them against; default: start an emulator for them"
    )
    run_queries.add_argument(
        "--api-key", help="the API key for keyed services (default: the service's first key, when started here)"
    )
    run_queries.add_argument("--stage", default="dev", help="the Chalice stage of an emulator started here (dev)")
    run_queries.set_defaults(handler=test_queries)

    run_check = commands.add_parser(
        "check-package", help="compare a deployment zip with Lambda's size limits (exit 1 when over)"
    )
    run_check.add_argument("zip", help="the zip chalice package / chalice deploy built")
    run_check.set_defaults(handler=check_package)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
