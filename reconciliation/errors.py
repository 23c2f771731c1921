"""The reconciliation's errors: each a `ReconciliationError` (an `ApplicationError`)."""

from config.errors import ApplicationError


class ReconciliationError(ApplicationError):
    code = "reconciliation_error"


class InvalidWindow(ReconciliationError):
    """The window is empty, reversed, or not a date/time we can read."""

    code = "invalid_window"


class RunNotFound(ReconciliationError):
    code = "run_not_found"
    http_status = 404


class RepairNotApplicable(ReconciliationError):
    """The item has no safe repair, or its repair was already applied."""

    code = "repair_not_applicable"
    http_status = 409
