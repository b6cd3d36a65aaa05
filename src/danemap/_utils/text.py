"""Text that several outputs share, written once."""

from __future__ import annotations

__all__ = ["DISCLAIMER"]

#: The disclaimer carried by every report, statistics sidecar and summary.
DISCLAIMER = (
    "danemap is a research tool, not a diagnostic device. Group differences in ADHD imaging "
    "are small (ENIGMA-ADHD: Cohen's d between -0.19 and 0.00 for subcortical volumes) and "
    "overlap heavily between groups; group differences and classification accuracies "
    "describe this sample, and no number here diagnoses ADHD in an individual."
)
