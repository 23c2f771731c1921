"""`flush` aware of the append-only triggers: the same command as audit's (see there)."""

from audit.management.commands.flush import Command

__all__ = ["Command"]
