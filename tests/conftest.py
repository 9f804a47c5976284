"""Suite-wide options: ``--slow`` runs the full-size fault, fuzz and load tests.

CI runs the fast subset (``make test``); ``make test-slow`` runs everything at full size.
A test marked ``slow`` runs only with ``--slow``; a test that scales (kill points, fuzz
cases, seconds of load) reads the ``slow`` fixture and picks its size from it, so CI
exercises the same code path at a smaller size.
"""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow",
        action="store_true",
        default=os.environ.get("SQLROOMS_NB_SLOW") == "1",
        help="run the slow suite: full-size fault, fuzz and load tests (also SQLROOMS_NB_SLOW=1)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow suite only: run with --slow (make test-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def slow(pytestconfig: pytest.Config) -> bool:
    """True in the slow suite (``--slow``): tests pick full sizes, else the CI sizes."""
    return bool(pytestconfig.getoption("--slow"))


@pytest.fixture(scope="session", autouse=True)
def _spill_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Spill files (store/spill.py) of every room the tests open go to a temporary folder, never
    to the user's state folder; subprocess kernels inherit it through the environment."""
    os.environ.setdefault("SQLROOMS_NB_SPILL_DIR", str(tmp_path_factory.mktemp("spill")))
