"""Reconciliation with the venue's records, manual-trade detection and learning records.

Pure functions first: :func:`diff` takes our ledger and the venue's reports
(as DataFrames, :class:`Ledger` and :class:`VenueReport`) and returns typed
:class:`Difference` objects, each with its evidence and a suggested
:class:`Correction`. Corrections are applied only by choice
(:class:`ApplyRules`), always audited. :class:`SyncService` runs this on an
interval and at engine start; every run is stored. Manual closes become
learning records beside what the strategy would have done::

    from workbench.sync import reconcile, learning_records, learning_summary
    report = reconcile(store, deployment_id="ab12cd34")          # look only
    report.differences                                            # DataFrame
    reconcile(store, deployment_id="ab12cd34", apply=True)        # apply the safe corrections
    learning_summary(store)
"""
from __future__ import annotations

from .apply import apply_corrections
from .diff import diff, differences_frame
from .frames import Ledger, VenueReport, ledger_from_store
from .learning import counterfactual_exit, learning_records, learning_summary
from .model import (
    ACTIONS,
    KINDS,
    ApplyRules,
    Correction,
    Difference,
    ReconcileError,
    Tolerances,
    tolerances_from_markets,
)
from .records import differences as stored_differences
from .records import runs
from .service import SyncReport, SyncService, Target, reconcile

__all__ = [
    "ACTIONS", "KINDS", "ApplyRules", "Correction", "Difference", "Ledger", "ReconcileError", "SyncReport", "SyncService",
    "Target", "Tolerances", "VenueReport", "apply_corrections", "counterfactual_exit", "diff", "differences_frame",
    "learning_records", "learning_summary", "ledger_from_store", "reconcile", "runs", "stored_differences",
    "tolerances_from_markets",
]
