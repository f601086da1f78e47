"""`tal-pipeline` subcommands: each module here is one command, named after the module, and defines
`HELP` (one line), `add_arguments(parser)` and `handle(args) -> exit status`.

Modules are discovered, so adding a command is adding a file. Heavy imports
(torch, numba) belong inside the command function, not at module import.
"""
