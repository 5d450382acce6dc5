"""synthreg.validators: check generated tables against their spec (Great Expectations + ours)."""

from __future__ import annotations

from synthreg.validators.suite import CheckResult, ValidationResult, validate_tables

__all__ = ["CheckResult", "ValidationResult", "validate_tables"]
