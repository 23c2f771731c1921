"""Models of the reconciliation app."""
