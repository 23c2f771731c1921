"""Operations: the health endpoint and the benchmark runner. Imports no business app."""
