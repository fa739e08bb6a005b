"""Every hook is documented (test_hookspecs.py) and exercised: this module fails when the suite
calls a hook nowhere with an implementation behind it, in the manner of datasette's test_docs.py.

``hook_watch.py`` watches every plugin manager the tests make in this process and records each hook
called with at least one implementation. The check runs last (hook_watch moves it there) and only
when the whole suite ran: a partial run cannot tell.
"""

from __future__ import annotations

import pytest

from credenza import hookspecs
from credenza.loader import HOOK_PREFIX
from tests.hook_watch import HOOKS_CALLED, whole_suite_collected


def declared_hooks() -> set[str]:
    return {name for name in dir(hookspecs) if name.startswith(HOOK_PREFIX)}


def test_the_watch_sees_hook_calls() -> None:
    """The recording itself works: a broker made here shows up in HOOKS_CALLED."""
    from credenza import hookimpl
    from credenza.broker import Broker

    class Accounts:
        @hookimpl
        def credenza_accounts(self):
            return []

    HOOKS_CALLED.discard("credenza_accounts")
    Broker.from_config({"credenza": {"plugins": []}}, plugins=[Accounts()]).accounts()
    assert "credenza_accounts" in HOOKS_CALLED


@pytest.mark.hook_coverage
def test_every_hook_is_exercised(request: pytest.FixtureRequest) -> None:
    if not whole_suite_collected(request.session):
        pytest.skip("hook coverage is only known when the whole suite runs")
    missing = sorted(declared_hooks() - HOOKS_CALLED)
    assert not missing, f"no test calls these hooks with an implementation: {missing}"
