"""End-to-end pipelines composed from the core: training, spectrum, limit, SAP, gap.

Each pipeline module exposes a frozen ``Config`` dataclass (its fields are the ``prune-jax``
command-line flags) and ``run(config) -> dict``; see :mod:`prune_jax.cli`.
"""
