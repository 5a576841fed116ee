"""Domain errors of the serving data plane.

The data plane raises these and knows nothing of gRPC; `serving.status` maps each class to a gRPC
code in one table. Messages are written for the client: they name the model or tensor and say what
was expected, because that is all a caller sees.
"""

from __future__ import annotations


class ServingError(Exception):
    """Base class: a failure the client caused or can act on; its message is sent as is."""


class ModelNotFound(ServingError):
    """No model (or version) of that name in the repository."""


class UnknownItems(ServingError):
    """Items a request names are not in the model's vocabulary (words a word2vec model never saw)."""


class ModelNotReady(ServingError):
    """The model exists but cannot serve now: loading, unloading, failed to load, or draining."""


class VersionRetired(ModelNotReady):
    """This model version is being replaced or unloaded; a request resolved to it just before may
    resolve again (the data plane does, so a hot reload fails no request)."""


class InvalidInput(ServingError):
    """The request is malformed: names, datatypes, shapes or sizes do not match the model."""


class TooLarge(ServingError):
    """The request is well formed but above an operator's cap (a serve flag or a model parameter);
    the message names the cap and what sets it."""


class ModelRunFailed(InvalidInput):
    """ONNX Runtime refused to run this request's input (an index out of range, a shape the graph
    cannot take): the cause is the input, since the same model runs other requests."""


class QueueFull(ServingError):
    """The model's bounded queue (default_queue_policy.max_queue_size) is full."""


class DeadlineExceeded(ServingError):
    """The request's deadline passed while it waited in the queue (it was not run) or while it ran."""


class RunStopped(DeadlineExceeded):
    """A run was stopped by the run watch (serving/run_watch.py): it outlasted the server's bound on
    one run, or every request in it had passed its deadline."""


class Unsupported(ServingError):
    """The operation is not allowed in this server's mode (e.g. Load/Unload outside explicit mode)."""


class LoadFailed(ServingError):
    """A model could not be loaded; the message carries the reason also shown in RepositoryIndex.
    Answered INVALID_ARGUMENT (HTTP 400), as Triton answers a load that failed: retrying the same
    load fails the same way until the folder or the override changes."""
