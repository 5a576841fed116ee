"""`dnnzoo analyze`: measure a model under candidate execution plans and keep the best (cli.py)."""

from serving.analyze.grid import Plan, apply_plan, best, plan_of

__all__ = ["Plan", "apply_plan", "best", "plan_of"]
