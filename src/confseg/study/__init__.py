"""The confidence-threshold study: strategies x folds x seeds, run locally or on Ray.

``StudySpec`` says what to train, :func:`run_study` runs (or continues) it into a study
folder and collects paired statistics, :func:`study_status` reports progress.
"""

from confseg.study.collect import collect
from confseg.study.runner import open_study, run_study, study_status
from confseg.study.spec import DEFAULT_STRATEGIES, Cell, StudySpec, slug

__all__ = ["DEFAULT_STRATEGIES", "Cell", "StudySpec", "collect", "open_study", "run_study",
           "slug", "study_status"]
