"""Reports: Pareto-front plots, tables and exports read from a finished study.

Entry points: ``python -m reports.build``, ``python -m reports.export``, ``python -m reports.compare``.
"""

from .formats import peft_config, select_trial, to_hilo, to_mola
from .load import StudyData, StudyError, TrialRow, load, open_study, read_study

__all__ = ["StudyData", "StudyError", "TrialRow", "load", "open_study", "peft_config", "read_study",
           "select_trial", "to_hilo", "to_mola"]
