"""The model manager: which model versions are loaded, their state, and the control modes.

- none: every model in the repository is loaded at start; the repository is not watched and
  Load/Unload are refused.
- poll: like none, then the repository is rescanned every `poll_seconds`: new models and versions
  are loaded, removed ones unloaded, and a changed config or label file reloads the model.
- explicit: only the `--load-model` names (`*` = all) at start, then the Load/Unload RPCs.

A (re)load builds the new version objects first and swaps them in with no await in between, so a
request always finds a complete set; versions that go away are drained (their batcher finishes what
it has queued) before their session is dropped, so requests in flight never fail. A model that
cannot be loaded is UNAVAILABLE with its reason, and the others serve on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from protos.model_config_pb2 import ModelConfig

from serving.batching import Batcher
from serving.errors import LoadFailed, ModelNotFound, ModelNotReady, Unsupported
from serving.limits import shown
from serving.repository import ModelSource, ModelSpec, Repository
from serving.sessions import LoadedSession, ProviderChoice, has_variable_dims, open_instances, open_side_by_side
from serving.statistics import VersionStatistics

log = logging.getLogger(__name__)

READY, UNAVAILABLE, LOADING, UNLOADING = "READY", "UNAVAILABLE", "LOADING", "UNLOADING"


@dataclass
class LoadedVersion:
    """One servable model version: its sessions, batcher and statistics."""

    name: str
    version: int
    spec: ModelSpec
    runtime: LoadedSession  # the first instance's session (on the CPU, every instance's)
    batcher: Batcher
    stats: VersionStatistics
    fingerprint: tuple
    instances: tuple[LoadedSession, ...] = ()  # each instance thread's session (GPU instances: their own)
    side_by_side: LoadedSession | None = None  # the adaptive plan's session for batches side by side


@dataclass
class ModelEntry:
    name: str
    state: str = UNAVAILABLE
    reason: str = ""
    spec: ModelSpec | None = None
    versions: dict[int, LoadedVersion] = field(default_factory=dict)
    version_errors: dict[int, str] = field(default_factory=dict)
    failed: dict[int, tuple] = field(default_factory=dict)  # version -> (fingerprint, reason) not retried
    refused: str = ""  # why the last sync applied nothing or not everything ("" when all of it loaded)
    warned: tuple = ()  # the config fingerprint whose ignored fields were last logged (once per config)


@dataclass
class ModelManager:
    repository: Repository
    mode: str = "none"
    providers: ProviderChoice = field(default_factory=ProviderChoice)
    startup_models: tuple[str, ...] = ()
    on_state: Callable[[str, bool], None] = lambda name, ready: None
    new_statistics: Callable[[str, str], VersionStatistics] = VersionStatistics  # the metrics export them
    max_run_s: float = 0.0  # `serve --max-run-seconds` (0: runs are not bounded)
    entries: dict[str, ModelEntry] = field(default_factory=dict, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    # -- lookups (synchronous: no await between resolving and submitting a request) --------

    def resolve(self, name: str, version: str = "") -> LoadedVersion:
        entry = self.entries.get(name)
        if entry is None:
            raise ModelNotFound(f"unknown model {shown(name)}")
        if version:
            if not (version.isascii() and version.isdigit() and len(version) <= 18):  # int() of 5,000 digits raises
                raise ModelNotFound(f"model {name!r} has no version {shown(version)} (versions are integers)")
            number = int(version)
            if number in entry.versions:
                return entry.versions[number]
            if number in entry.version_errors:
                raise ModelNotReady(f"model {name!r} version {number} is unavailable: {entry.version_errors[number]}")
            if entry.state == LOADING:
                raise ModelNotReady(f"model {name!r} is loading")
            raise ModelNotFound(f"model {name!r} has no loaded version {number}")
        if not entry.versions:
            why = entry.reason or entry.state.lower()
            raise ModelNotReady(f"model {name!r} is not ready: {why}")
        return entry.versions[max(entry.versions)]

    def ready(self, name: str, version: str = "") -> bool:
        try:
            self.resolve(name, version)
        except (ModelNotFound, ModelNotReady):
            return False
        return True

    def loaded(self) -> list[LoadedVersion]:
        # list() copies are atomic under the GIL: the metrics thread calls this too
        return [v for entry in list(self.entries.values()) for _, v in sorted(list(entry.versions.items()))]

    # -- control ------------------------------------------------------------------------------

    async def start(self) -> None:
        names = self.repository.scan()
        for name in names:
            self.entries[name] = ModelEntry(name, reason="not loaded")
        if self.mode == "explicit" and "*" not in self.startup_models:
            wanted = [n for n in self.startup_models if n in self.entries]
            for missing in sorted(set(self.startup_models) - set(self.entries)):
                log.error("--load-model %r: no such model folder in %s", missing, self.repository.root)
        else:
            wanted = names
        async with self._lock:
            for name in wanted:
                await self._sync(name)

    async def poll_once(self) -> None:
        """Bring loaded models in line with the disk (poll mode)."""
        async with self._lock:
            names = set(self.repository.scan())
            for name in sorted(names | set(self.entries)):
                if name not in names:
                    await self._remove(name)
                else:
                    self.entries.setdefault(name, ModelEntry(name))
                    await self._sync(name)

    async def poll_forever(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await self.poll_once()
            except Exception:  # noqa: BLE001 - a bad scan must not stop polling
                log.exception("repository poll failed")

    async def load(self, name: str, override: ModelConfig | None = None) -> None:
        """Explicit mode: (re)load `name`, with `override` in place of its config.pbtxt if given."""
        if self.mode != "explicit":
            raise Unsupported(f"explicit model load/unload is not allowed in model control mode {self.mode!r}")
        async with self._lock:
            if name not in self.repository.scan():
                raise ModelNotFound(f"no model folder named {shown(name)} in the repository")
            self.entries.setdefault(name, ModelEntry(name))
            entry = await self._sync(name, force=True, override=override)
        if entry.state != READY or entry.refused:
            # As Triton: a failed reload leaves the versions already loaded serving, and says so.
            still = f" (version {', '.join(map(str, sorted(entry.versions)))} still serving)" if entry.versions else ""
            raise LoadFailed(f"failed to load {name!r}: {entry.refused or entry.reason}{still}")

    async def unload(self, name: str) -> None:
        if self.mode != "explicit":
            raise Unsupported(f"explicit model load/unload is not allowed in model control mode {self.mode!r}")
        async with self._lock:
            if name not in self.entries:
                raise ModelNotFound(f"unknown model {shown(name)}")
            await self._drop(self.entries[name], "unloaded")

    def hurry(self) -> None:
        """Shutdown has begun: every batcher runs what it has without waiting for batches to fill."""
        for loaded in self.loaded():
            loaded.batcher.hurry()

    async def close(self) -> None:
        """Drain every batcher (queued requests still run), then forget the sessions."""
        async with self._lock:
            for entry in self.entries.values():
                await self._drop(entry, "server is shutting down")

    # -- internals ------------------------------------------------------------------------------

    async def _remove(self, name: str) -> None:
        entry = self.entries.get(name)
        if entry is not None:
            await self._drop(entry, "model folder removed")
            del self.entries[name]

    async def _drop(self, entry: ModelEntry, reason: str) -> None:
        old = list(entry.versions.values())
        entry.state, entry.reason, entry.versions, entry.version_errors = UNLOADING, reason, {}, {}
        self.on_state(entry.name, False)
        await asyncio.gather(*(v.batcher.close() for v in old))
        entry.state = UNAVAILABLE

    async def _sync(self, name: str, force: bool = False, override: ModelConfig | None = None) -> ModelEntry:
        """Load what the disk says for one model, keeping versions that did not change."""
        entry = self.entries[name]
        source: ModelSource = await asyncio.to_thread(self.repository.read, name, override)
        news = source.error != entry.refused  # a folder that stays broken is logged once, not at every poll
        entry.refused = source.error or ""
        if source.error:
            if entry.versions:  # keep serving what works; say why the update was refused
                entry.reason = f"update not applied: {source.error}"
                if news or force:
                    log.error("model %r: %s (previous versions keep serving)", name, source.error)
            else:
                entry.state, entry.reason, entry.spec = UNAVAILABLE, source.error, None
                if news or force:
                    log.error("model %r is unavailable: %s", name, source.error)
                self.on_state(name, False)
            return entry
        keep: dict[int, LoadedVersion] = {}
        for number, loaded in entry.versions.items():
            same = loaded.fingerprint == (source.fingerprint, source.version_fingerprints.get(number))
            if same and number in source.versions and not force:
                keep[number] = loaded
        unchanged_failures = all(
            entry.failed.get(n, (None,))[0] == (source.fingerprint, source.version_fingerprints.get(n))
            for n in source.versions if n not in keep
        )
        if set(keep) == set(entry.versions) and unchanged_failures and entry.spec is not None and not force:
            return entry  # nothing changed on disk since the last look
        if not entry.versions:
            entry.state = LOADING
        fresh: dict[int, LoadedVersion] = {}
        errors = dict(source.version_errors)
        for number, path in source.versions.items():
            if number in keep:
                continue
            fingerprint = (source.fingerprint, source.version_fingerprints.get(number))
            if not force and entry.failed.get(number, (None,))[0] == fingerprint:
                errors[number] = entry.failed[number][1]  # same files as last time: do not retry
                continue
            try:
                fresh[number] = await self._open(source, number, path)
            except Exception as exc:  # noqa: BLE001 - any failure to open one version is that version's
                errors[number] = f"version {number}: {exc}" if isinstance(exc, ValueError) else (
                    f"version {number}: failed to open ({type(exc).__name__})")
                if not isinstance(exc, ValueError):
                    log.error("model %r version %d: unexpected failure while opening", name, number, exc_info=exc)
                entry.failed[number] = (fingerprint, errors[number])
                log.error("model %r version %d failed to load: %s", name, number, exc)
                if number in entry.versions:  # a failed reload leaves the old one serving
                    keep[number] = entry.versions[number]
                entry.refused = "; ".join(filter(None, (entry.refused, errors[number])))
        if not keep and not fresh and entry.versions:
            # Nothing of the update can serve (a version_policy naming only missing versions, say):
            # refuse it whole, as a failed reload, and keep serving what was loaded.
            entry.refused = "; ".join(errors.values()) or "no version to serve"
            entry.reason = f"update not applied: {entry.refused}"
            log.error("model %r: %s (previous versions keep serving)", name, entry.reason)
            return entry
        old = [v for n, v in entry.versions.items() if keep.get(n) is not v]
        entry.versions = {**keep, **fresh}
        entry.version_errors = {n: e for n, e in errors.items() if n not in entry.versions}
        entry.spec = source.spec
        if source.spec.warning and entry.warned != source.fingerprint:
            entry.warned = source.fingerprint
            log.warning("model %r: %s", name, source.spec.warning)
        if entry.versions:
            entry.state, entry.reason = READY, "; ".join(entry.version_errors.values())
        else:
            entry.state = UNAVAILABLE
            entry.reason = "; ".join(errors.values()) or "no version to serve"
        self.on_state(name, entry.state == READY)
        for number in sorted(fresh):
            devices = [s.device for s in fresh[number].instances if s.device is not None]
            on = f" (instances on GPUs {', '.join(map(str, devices))})" if devices else ""
            log.info("loaded model %r version %d on %s%s", name, number, ", ".join(fresh[number].runtime.providers), on)
        if old:
            await asyncio.gather(*(v.batcher.close() for v in old))
            log.info("unloaded model %r versions %s", name, sorted(v.version for v in old))
        return entry

    async def _open(self, source: ModelSource, number: int, path) -> LoadedVersion:
        label = f"model {source.name!r} version {number}"
        instances = await asyncio.to_thread(open_instances, path, source.spec, self.providers, label)
        runtime = instances[0]
        stats = self.new_statistics(source.name, str(number))
        own = [s.run for s in instances] if any(s is not runtime for s in instances) else None  # one shared session: no list
        side_by_side = await asyncio.to_thread(open_side_by_side, path, source.spec, self.providers, label, instances)
        # The single-row probe compares runs of whatever lone single rows come: alike only where every
        # request has one shape, not for a model whose requests set a dimension of their own.
        policy = replace(source.spec.batch_policy(), max_run_s=self.max_run_s)
        batcher = Batcher(runtime.run, policy, label, instance_runs=own,
                          side_by_side_run=side_by_side and side_by_side.run,
                          side_by_side_row_ns=side_by_side and side_by_side.warm_run_ns,
                          probe_single_rows=not has_variable_dims(source.spec))
        loaded = LoadedVersion(
            source.name, number, source.spec, runtime, batcher, stats,
            (source.fingerprint, source.version_fingerprints.get(number)), tuple(instances), side_by_side,
        )

        loop = asyncio.get_running_loop()

        def failed(reason: str) -> None:  # on the instance thread that stopped
            loop.call_soon_threadsafe(self._out_of_service, loaded, reason)

        batcher.on_execution = stats.record_execution
        batcher.on_failure = failed
        batcher.start()
        return loaded

    def _out_of_service(self, loaded: LoadedVersion, reason: str) -> None:
        """A version whose instance thread stopped leaves READY at once, with the reason in the index."""
        entry = self.entries.get(loaded.name)
        if entry is None or entry.versions.get(loaded.version) is not loaded:
            return
        del entry.versions[loaded.version]
        entry.version_errors[loaded.version] = f"version {loaded.version}: {reason}"
        entry.failed[loaded.version] = (loaded.fingerprint, entry.version_errors[loaded.version])
        if not entry.versions:
            entry.state, entry.reason = UNAVAILABLE, entry.version_errors[loaded.version]
        log.error("model %r version %d is out of service: %s", loaded.name, loaded.version, reason)
        self.on_state(loaded.name, bool(entry.versions))
