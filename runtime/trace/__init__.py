"""Golden traces (docs/trace-format.md): versioned JSON lines that another implementation checks itself against.

``schema`` reads and writes the lines, ``record`` makes them from model runs and stepper sessions, ``replay``
re-runs a trace and reports, per op, a bitwise match, a match within tolerance, or the first divergence.
"""
