"""`dnnzoo analyze MODEL`: find the execution plan that serves a load shape best, and keep it.

What Triton's Model Analyzer and perf_analyzer do together, built in: for the load shape given
(`--batch` items per request, `--concurrency` clients in a closed loop, an optional p99 budget) it
measures the model under every candidate plan (instance threads x intra-op threads x max queue delay
x preferred batch size), each on a fresh `dnnzoo serve` started on a free loopback port from a
temporary copy of the model folder, prints a table, draws a chart, and with `--write` puts the best
plan into the model's config.pbtxt (atomically; every other setting kept). The best plan is the
highest throughput whose p99 latency is within the budget (any p99 without a budget).

The default grid is sized to this machine's cores (serving/analyze/grid.py); a model that batches
is given `dynamic_batching` in every plan. `--write` rewrites config.pbtxt in protobuf text format
(serving's canonical layout: the settings are kept, comments and spacing are not). Exit status: 0
with a plan, 1 when no plan met the budget or a server failed, 2 for bad arguments or model folders.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
from pathlib import Path

import grpc

from dnnzoo.errors import UserError
from protos.config_text import parse_config
from protos.model_config_pb2 import ModelConfig

from serving import child_server, loadgen
from serving.analyze import report
from serving.analyze.grid import Plan, apply_plan, best, grid, plan_of
from serving.analyze.sweep import LocalServers, load, sweep, write_config
from serving.config import PROVIDER_CHOICES, ServeConfig
from serving.plan import usable_cores
from protos.contract import CONFIG_FILE
from serving.repository import Repository


def _integers(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write a comma-separated list of integers, e.g. 1,2,4") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: needs one or more integers >= 0")
    return values


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="the model's folder name in the repository")
    p.add_argument("--repository", type=Path, default=ServeConfig().repository,
                   help=f"model repository folder (default {ServeConfig().repository})")
    p.add_argument("--url", metavar="HOST:PORT",
                   help="measure a server that is already running instead: it can only measure the plan that server "
                        "has loaded, not try or change plans (no grid, no --write)")
    shape = p.add_argument_group("load shape")
    shape.add_argument("--batch", type=int, default=1, help="items per request (default 1)")
    shape.add_argument("--concurrency", type=int, default=1, help="clients sending back to back (default 1)")
    shape.add_argument("--shape", type=_input_shape, action="append", default=[], metavar="NAME:DIMS",
                       help="an input's dimensions without the batch, for dimensions the config leaves variable "
                            "(-1), e.g. image:3,224,224 (as perf_analyzer's --shape); repeat per input; default 1")
    shape.add_argument("--latency-budget-ms", type=float,
                       help="the p99 latency a plan may have (default: none, the fastest plan wins)")
    shape.add_argument("--seconds", type=float, default=3.0, help="measured seconds per plan (default 3)")
    shape.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each (default 1)")
    shape.add_argument("--rounds", type=int, default=1,
                       help="measure the grid this many times in rotated order; medians (default 1)")
    plans = p.add_argument_group("candidate plans (default: a grid sized to this machine's cores)")
    plans.add_argument("--quick", action="store_true",
                       help="three plans: the server's default, one instance on every core, one instance per core")
    plans.add_argument("--instances", type=_integers, help="instance counts to try, e.g. 1,2,4")
    plans.add_argument("--threads", type=_integers, help="intra-op thread counts to try, e.g. 1,2")
    plans.add_argument("--delays-us", type=_integers, help="max queue delays to try (microseconds), e.g. 0,500")
    plans.add_argument("--preferred", type=_integers, help="preferred batch sizes to try beside each delay > 0")
    plans.add_argument("--providers", choices=PROVIDER_CHOICES, default="auto",
                       help="the servers' execution providers (default auto)")
    out = p.add_argument_group("output")
    out.add_argument("--chart", type=Path, help="PNG chart path (default analyze-MODEL.png)")
    out.add_argument("--json", type=Path, metavar="FILE", help="also write every measurement and the choice here")
    out.add_argument("--write", action="store_true", help="write the best plan into the model's config.pbtxt")
    return p


def _check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    for name in ("batch", "concurrency", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.seconds <= 0 or args.warmup < 0:
        parser.error("--seconds must be positive and --warmup not negative")
    if args.latency_budget_ms is not None and args.latency_budget_ms <= 0:
        parser.error("--latency-budget-ms must be positive")
    if args.url and (args.write or args.quick or args.instances or args.threads or args.delays_us or args.preferred):
        parser.error("--url measures the running server's plan only: it cannot try or write plans "
                     "(drop --write and the plan flags, or analyze the repository without --url)")
    if any(v < 1 for v in (args.instances or []) + (args.threads or [])):
        parser.error("--instances and --threads must be at least 1")


def _input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    name, _, dims = text.rpartition(":")
    try:
        shape = tuple(int(d) for d in dims.split(","))
    except ValueError:
        shape = ()
    if not name or not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME:DIMS with positive dimensions, e.g. image:3,224,224")
    return name, shape


def _payload(config: ModelConfig, args: argparse.Namespace) -> bytes:
    given = dict(args.shape)
    for tensor in config.input:
        if -1 in tensor.dims and tensor.name not in given:
            print(f"note: input {tensor.name!r} has variable dimensions {list(tensor.dims)}, sent as 1; give "
                  f"--shape {tensor.name}:DIMS for the size your clients send", file=sys.stderr)
    try:
        return loadgen.request_for(config, args.batch, shapes=given)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _local_model(repository: Path, name: str) -> tuple[Path, ModelConfig]:
    """The model folder and its config; UserError naming what is missing or wrong."""
    if not repository.is_dir():
        raise UserError(f"model repository {repository} does not exist (see --repository)")
    read = Repository(repository).read(name)
    if read.spec is None or read.error:
        known = ", ".join(Repository(repository).scan()) or "none"
        raise UserError(f"cannot analyze model {name!r}: {read.error} (models in {repository}: {known})")
    return repository / name, read.spec.config


def _running_model(url: str, name: str) -> ModelConfig:
    from protos import grpc_service_pb2 as pb
    from protos import grpc_service_pb2_grpc as pb_grpc

    with grpc.insecure_channel(url) as channel:
        try:
            return pb_grpc.GRPCInferenceServiceStub(channel).ModelConfig(pb.ModelConfigRequest(name=name),
                                                                         timeout=10).config
        except grpc.RpcError as exc:
            raise UserError(f"cannot read model {name!r}'s config from {url}: {exc.code().name}: {exc.details()}") from None


def _write(folder: Path, plan: Plan) -> Path:
    """Put `plan` into the folder's config.pbtxt as it is on disk now, keeping everything else."""
    path = folder / CONFIG_FILE
    config = parse_config(path.read_text(encoding="utf-8"), f"{folder.name}/{CONFIG_FILE}")
    write_config(path, apply_plan(config, plan))
    return path


def analyze(args: argparse.Namespace) -> int:
    cores = usable_cores()
    if args.url:
        config = _running_model(args.url, args.model)
        payload = _payload(config, args)
        measure = load(payload, args.batch, args.concurrency, args.seconds, args.warmup)
        plans = [plan_of(config)]  # as the server reports it (its cores, not necessarily ours)
        results = sweep(plans, lambda plan: measure(args.url), args.rounds)
        where = f"the server at {args.url}"
    else:
        folder, config = _local_model(args.repository, args.model)
        payload = _payload(config, args)
        plans = grid(config, args.batch, args.concurrency, cores, args.quick, args.instances, args.threads,
                     args.delays_us, args.preferred)
        measure = load(payload, args.batch, args.concurrency, args.seconds, args.warmup)
        with tempfile.TemporaryDirectory(prefix="dnnzoo-analyze-") as workdir:
            servers = LocalServers(folder, config, Path(workdir), args.providers)
            results = sweep(plans, lambda plan: servers.measure(plan, measure), args.rounds)
        where = f"a fresh dnnzoo server per plan, {cores} usable cores"
    budget = args.latency_budget_ms
    picked = best(results, budget)
    chosen = picked[0] if picked else None
    shape = f"batch {args.batch}, concurrency {args.concurrency}"
    budget_text = f", p99 budget {budget:g} ms" if budget is not None else ""
    print(f"model {args.model}: {shape}{budget_text}; {len(plans)} plan(s) x {args.rounds} round(s) x "
          f"{args.seconds:g} s on {where}\n")
    print(report.table(results, chosen, budget))
    chart = args.chart or Path(f"analyze-{args.model}.png")
    report.chart(results, chosen, budget, f"dnnzoo analyze {args.model}: {shape}{budget_text}",
                 f"{len(plans)} plan(s), {args.rounds} round(s) x {args.seconds:g} s each, on {where}", chart)
    print(f"\nchart: {chart}")
    if args.json:
        args.json.write_text(json.dumps({
            "model": args.model, "batch": args.batch, "concurrency": args.concurrency, "latency_budget_ms": budget,
            "seconds": args.seconds, "rounds": args.rounds, "cores": cores, "url": args.url,
            "results": [{"plan": plan.as_dict(), **row} for plan, row in results],
            "chosen": chosen.as_dict() if chosen else None,
        }, indent=1))
    if chosen is None:
        lowest = min(results, key=lambda pair: pair[1]["p99_ms"])
        print(f"no plan kept p99 within {budget:g} ms (lowest: {lowest[0].label}, {lowest[1]['p99_ms']:.2f} ms)"
              + ("; nothing written" if args.write else ""), file=sys.stderr)
        return 1
    row = dict(results)[chosen]
    print(f"best plan: {chosen.label} ({row['items_s']:,.0f} items/s, p50 {row['p50_ms']:.2f} ms, "
          f"p99 {row['p99_ms']:.2f} ms)")
    if args.write:
        print(f"wrote it into {_write(folder, chosen)}")
    elif not args.url:
        print("(--write puts it into the model's config.pbtxt)")
    return 0


def main(argv: list[str] | None = None, prog: str = "dnnzoo analyze") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    _check(args, parser)
    previous = child_server.stop_on_signals()
    try:
        return analyze(args)
    except (UserError, ValueError, OSError, child_server.ServerFailed) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, (UserError, ValueError)) else 1
    except grpc.RpcError as exc:
        print(f"{prog}: the server failed a call: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except ImportError as exc:
        print(f"{prog}: {exc.name or exc} is missing: pip install 'dnnzoo[analyze]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; servers stopped, nothing written", file=sys.stderr)
        return 130
    except asyncio.CancelledError:
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
