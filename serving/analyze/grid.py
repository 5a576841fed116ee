"""The candidate execution plans `dnnzoo analyze` measures, how a plan is written into a config, and
which measured plan wins.

A plan is what serving/plan.py reads from a config (instance threads, the session's intra-op pool)
plus Triton's dynamic-batching knobs (max queue delay, preferred batch sizes). The default grid is
sized to the cores: every power-of-two split of instances x threads that does not ask for more
threads than cores, plus the server's own default plan (the adaptive one: a lone batch on every
core, batches side by side on the cores divided; serving/plan.py); no more instances than
concurrent requests (or than the default plan has). Queue delays are only tried when two requests of the load
could merge (a batching model, concurrency > 1, 2 x batch <= max_batch_size), and a preferred size
(the whole load as one batch) only beside a delay: without a delay nothing waits for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from protos import contract
from protos.model_config_pb2 import ModelConfig

from serving.plan import int_parameter, plan_for

DEFAULT_DELAYS_US = (0, 1000)


@dataclass(frozen=True)
class Plan:
    instances: int
    threads: int  # the session's intra-op pool, shared by the instances
    delay_us: int | None = 0  # dynamic_batching.max_queue_delay_microseconds; None: no dynamic batching
    preferred: tuple[int, ...] = ()
    side_by_side: int | None = None  # the adaptive plan's threads for batches side by side; None: fixed

    @property
    def adaptive(self) -> bool:
        return self.side_by_side is not None

    @property
    def label(self) -> str:
        text = f"{self.instances}x{self.threads}/{self.side_by_side}" if self.adaptive else f"{self.instances}x{self.threads}"
        if self.delay_us is None:
            return text + " unbatched"
        if self.delay_us:
            text += f" +{self.delay_us}us"
        if self.preferred:
            text += " pref " + ",".join(map(str, self.preferred))
        return text

    def as_dict(self) -> dict:
        return {"instances": self.instances, "intra_op_threads": self.threads, "max_queue_delay_us": self.delay_us,
                "preferred_batch_size": list(self.preferred), "side_by_side_threads": self.side_by_side,
                "label": self.label}


def _powers_of_two(limit: int) -> list[int]:
    values, n = [], 1
    while n <= limit:
        values.append(n)
        n *= 2
    return values


def can_merge(config: ModelConfig, batch: int, concurrency: int) -> bool:
    """Whether two requests of this load could share one batch on this model."""
    return (config.max_batch_size > 0 and concurrency > 1 and 2 * batch <= config.max_batch_size
            and config.WhichOneof("scheduling_choice") in (None, "dynamic_batching"))


def thread_splits(cores: int, concurrency: int, quick: bool = False) -> list[tuple[int, int, int | None]]:
    """(instances, intra-op threads, side-by-side threads) triples: the server's default plan (adaptive
    where the cores can be divided) and fixed plans (None); `quick`: the default plan, one all-core
    instance, one instance per core."""
    chosen = plan_for(ModelConfig(), cores)
    default = (chosen.instances, chosen.intra_op_threads, chosen.side_by_side_threads)
    if quick:
        fixed = [(1, cores), (cores, 1)]
    else:
        fixed = [(i, t) for i in _powers_of_two(cores) for t in sorted({*_powers_of_two(cores), cores}) if i * t <= cores]
    most = max(concurrency, chosen.instances)  # the default plan stays a candidate at any concurrency
    return list(dict.fromkeys([default, *((min(i, most), t, None) for i, t in fixed)]))


def grid(config: ModelConfig, batch: int, concurrency: int, cores: int, quick: bool = False,
         instances: list[int] | None = None, threads: list[int] | None = None,
         delays_us: list[int] | None = None, preferred: list[int] | None = None) -> list[Plan]:
    """Every candidate plan; lists given by the user replace that dimension of the default grid."""
    if instances or threads:
        splits = thread_splits(cores, concurrency, quick)
        pairs = [(i, t, None) for i in instances or sorted({i for i, _, _ in splits})
                 for t in threads or sorted({t for _, t, _ in splits})]
    else:
        pairs = thread_splits(cores, concurrency, quick)
    batching = config.max_batch_size > 0 and config.WhichOneof("scheduling_choice") in (None, "dynamic_batching")
    if not batching:
        queueing = [(None, ())]
    else:
        merge = can_merge(config, batch, concurrency)
        delays = delays_us if delays_us is not None else (list(DEFAULT_DELAYS_US) if merge and not quick else [0])
        whole = min(config.max_batch_size, batch * concurrency) // batch * batch
        sizes = preferred if preferred is not None else ([whole] if merge and whole < config.max_batch_size else [])
        queueing = [(d, ()) for d in delays]
        queueing += [(d, (size,)) for d in delays if d for size in sizes if size]
    return list(dict.fromkeys(Plan(i, t, d, p, s) for i, t, s in pairs for d, p in queueing))


def apply_plan(config: ModelConfig, plan: Plan) -> ModelConfig:
    """A copy of `config` running `plan`; every other field (inputs, parameters, queue size...) as it was.

    The instance groups become one group (the first group's kind and devices) with the plan's count.
    The adaptive plan is the one a config gets by giving neither count nor threads, so for it both
    are left out (and the server adapts to the cores of the machine it runs on)."""
    out = ModelConfig()
    out.CopyFrom(config)
    first = config.instance_group[0] if config.instance_group else None
    del out.instance_group[:]
    if first is not None or not plan.adaptive:
        group = out.instance_group.add()
        if first is not None:
            group.CopyFrom(first)
        group.count = 0 if plan.adaptive else plan.instances
    if plan.adaptive:
        out.parameters.pop("intra_op_thread_count", None)
    else:
        out.parameters["intra_op_thread_count"].string_value = str(plan.threads)
    out.parameters.pop(contract.SIDE_BY_SIDE_THREADS, None)
    if plan.delay_us is not None:
        out.dynamic_batching.max_queue_delay_microseconds = plan.delay_us
        del out.dynamic_batching.preferred_batch_size[:]
        out.dynamic_batching.preferred_batch_size.extend(plan.preferred)
    return out


def plan_of(config: ModelConfig, cores: int | None = None) -> Plan:
    """The plan a config runs (as a server reports it, or as serving/plan.py would choose it here)."""
    chosen = plan_for(config, cores)
    threads = int_parameter(config, "intra_op_thread_count") or chosen.intra_op_threads
    side_by_side = int_parameter(config, contract.SIDE_BY_SIDE_THREADS) or chosen.side_by_side_threads
    if config.WhichOneof("scheduling_choice") != "dynamic_batching" or config.max_batch_size <= 0:
        return Plan(chosen.instances, threads, None, (), side_by_side)
    batching = config.dynamic_batching
    return Plan(chosen.instances, threads, batching.max_queue_delay_microseconds, tuple(batching.preferred_batch_size),
                side_by_side)


def best(results: list[tuple[Plan, dict]], budget_ms: float | None) -> tuple[Plan, dict] | None:
    """The highest throughput whose p99 is within the budget (any p99 without one); None if none is."""
    within = [(plan, row) for plan, row in results if budget_ms is None or row["p99_ms"] <= budget_ms]
    return max(within, key=lambda pair: pair[1]["items_s"], default=None)
