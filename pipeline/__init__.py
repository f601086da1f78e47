"""Luigi tasks of the TAL + BAPG pipeline: `luigi --module pipeline FullRun`.

Importing this package registers every task with luigi (and nothing heavy: no torch, no Numba).
"""
from pipeline.tasks import *  # noqa: F401,F403 - luigi finds tasks by importing the module
