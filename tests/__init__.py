"""The test suite: helpers in tests/helpers.py, fixtures in the conftest.py files."""

import pytest

# The helpers assert too: pytest rewrites their asserts, as it does the tests' own.
pytest.register_assert_rewrite("tests.helpers", "tests.faults.harness", "tests.cluster.harness")
