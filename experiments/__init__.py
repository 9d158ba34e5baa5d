"""Experiments: validated configs, the ``cl-ssvdo`` command line, the MLflow logger, run folders
(local-first results, resume, sync), sweeps, comparisons, reports and plots.

Imports every other package (cl_ssvdo, benchmarks, strategies) plus mlflow; nothing imports it.
Entry points: :func:`experiments.cli.main` (``cl-ssvdo``), :func:`experiments.runner.run_experiment`,
:func:`experiments.sweep.run_sweep`, :func:`experiments.compare.compare_runs`,
:class:`experiments.mlflow_logger.MLflowLogger`. How-to: docs/experiments.md.
"""
