"""Numscript: Formance's money-movement DSL, as a pure-Python interpreter."""

from .errors import MissingFundsError, NumscriptError
from .interpreter import ExecutionResult, Posting, run
from .parser import parse
from .ast import Program
from .store import StaticStore, Store

__all__ = ["ExecutionResult", "MissingFundsError", "NumscriptError", "Posting", "Program", "StaticStore", "Store", "parse", "run"]
