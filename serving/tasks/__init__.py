"""The typed task services' data plane: images, words and series in, answers out; no gRPC here."""

from serving.tasks.catalog import Catalog, TaskLimits

__all__ = ["Catalog", "TaskLimits"]
