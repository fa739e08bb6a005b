"""Which hooks the tests call: every PluginManager made in this process reports its hook calls
(pluggy's monitoring API), and test_hook_coverage.py reads the record at the end of the run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from credenza.loader import PluginManager

# Hooks called with at least one implementation behind them.
HOOKS_CALLED: set[str] = set()


def _record_hook_call(hook_name: str, hook_impls: list[object], kwargs: object) -> None:
    if hook_impls:
        HOOKS_CALLED.add(hook_name)


@pytest.fixture(scope="session", autouse=True)
def watch_hook_calls() -> Iterator[None]:
    """Every PluginManager made during the run reports to :data:`HOOKS_CALLED`."""
    original = PluginManager.__init__

    def watched_init(self: PluginManager) -> None:
        original(self)
        self.add_hookcall_monitoring(_record_hook_call, lambda *_: None)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PluginManager, "__init__", watched_init)
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Checks over the whole run (marked ``hook_coverage``) go last."""
    items.sort(key=lambda item: item.get_closest_marker("hook_coverage") is not None)


def whole_suite_collected(session: pytest.Session) -> bool:
    """Whether every test module of this directory has tests in this run."""
    collected = {Path(str(item.path)).name for item in session.items}
    return {path.name for path in Path(__file__).parent.glob("test_*.py")} <= collected
