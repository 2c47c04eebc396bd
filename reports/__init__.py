"""Reports: Pareto-front plots, tables and exports read from a finished study.

Entry points: ``python -m reports.build``, ``python -m reports.export``, ``python -m reports.compare``.
"""

from .choice import Choice, choose_trial
from .formats import to_hilo, to_moe_peft, to_mola
from .peft_format import peft_config
from .load import StudyData, StudyError, TrialRow, load, open_study, read_study

__all__ = ["Choice", "StudyData", "StudyError", "TrialRow", "choose_trial", "load", "open_study", "peft_config",
           "read_study", "to_hilo", "to_moe_peft", "to_mola"]
