"""Export's view of the one family table (training/families.py): which module describes a family's
exported models, and each family's default model name. Re-exported here so export code reads it
from one place; nothing is listed twice."""

from training.families import DEFAULT_NAMES, graphs

__all__ = ["DEFAULT_NAMES", "graphs"]
