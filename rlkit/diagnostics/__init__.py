"""Training diagnostics: SEEM (the Self-Excite Eigenvalue Measure of a critic, Yue et al. 2023), the
training-time monitor that logs it with Q statistics, and divergence verdicts from logged metrics
(``rlkit diagnose RUN_DIR``).

* :mod:`rlkit.diagnostics.seem`       -- the matrix ``A = γ Φ'Φᵀ - ΦΦᵀ`` and its rightmost eigenvalue;
  the ``critic_for_diagnostics()`` contract;
* :mod:`rlkit.diagnostics.monitor`    -- ``DiagnosticsMonitor`` (``diagnostics.seem.interval/batch``);
* :mod:`rlkit.diagnostics.divergence` -- growth-order fits, SGD crash step, stable/predicted/diverged;
* :mod:`rlkit.diagnostics.plot`, :mod:`rlkit.diagnostics.cli` -- the figure and the command.
"""

from rlkit.diagnostics.divergence import Thresholds, Verdict, diagnose
from rlkit.diagnostics.monitor import DiagnosticsMonitor
from rlkit.diagnostics.seem import SeemResult, compute_seem, functional_critic, seem_matrix

__all__ = [
    "DiagnosticsMonitor",
    "SeemResult",
    "Thresholds",
    "Verdict",
    "compute_seem",
    "diagnose",
    "functional_critic",
    "seem_matrix",
]
