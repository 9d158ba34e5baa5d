"""Fixtures of the reliability suite: the experiments package's tiny configs and store."""

from tests.experiments.conftest import store_uri, tiny_config  # noqa: F401 (fixtures)
