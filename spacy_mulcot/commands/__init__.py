"""The command line, one module per command group; each is a thin typer layer over
library functions (``cli.py`` keeps the app and registers them):

- ``corpus``: convert, stats, split, sample (datasets to ``.spacy`` files and back)
- ``teach``: teach (the teacher's two-stage chains), export-generator
- ``distill``: soft-targets, augment (the assistant's gifts to the student)
- ``evaluate``: evaluate, benchmark, zero-shot, report, render
- ``predict``: predict (local or Ray shards), serve
- ``experiments``: experiment (the seed runner), results (tables from ``results/``)
"""
