"""`tal-pipeline` subcommands: each module here defines `register(subparsers)`.

Modules are discovered, so adding a command is adding a file. Heavy imports
(torch, numba) belong inside the command function, not at module import.
"""
