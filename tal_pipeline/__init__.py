"""The pure code of tal-pipeline: `tal_pipeline.stages`, `.models`, `.storage` and `.synthetic`.

Each entry of this folder is a symbolic link to the repository's top-level folder of that name, so a plain
checkout imports `tal_pipeline.*` from the repository root, and every tool (pyright, editors, ruff, import-graph
tools) follows the name to its folder; the wheel holds real files (setuptools copies through the links).
"""
