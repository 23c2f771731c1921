"""Mechanisms every app uses and no app owns: retry backoff, leased claims and their sweeper,
the read-only admin base.

Must not import any app (it is the bottom floor; the import contracts enforce it)."""
