"""The audit trail of the whole suite holds none of the secrets the suite handled.

``audit_watch.py`` gives every broker made in this process the audit plugin's observers and
records the secrets every request carried and every response held; this check runs last (with
the hook coverage check) and only when the whole suite ran.
"""

from __future__ import annotations

import json

import pytest

from tests.audit_watch import SECRETS, TRAIL
from tests.hook_watch import whole_suite_collected


@pytest.mark.hook_coverage
def test_the_suites_audit_trail_holds_no_secret(request: pytest.FixtureRequest) -> None:
    if not whole_suite_collected(request.session):
        pytest.skip("the suite's secrets are only known when the whole suite runs")
    trail = TRAIL[0].read_text()
    lines = [json.loads(line) for line in trail.splitlines()]
    # The watch saw the suite: every kind of event, and many secrets, went by.
    assert {line["type"] for line in lines} == {"issued", "revoked", "reinstated", "denied",
                                                "sign-in"}
    assert len(SECRETS) > 100, len(SECRETS)
    leaked = sorted(secret for secret in SECRETS if secret in trail)
    assert not leaked, f"{len(leaked)} secrets are in the audit trail, e.g. " \
        f"{[secret[:12] + '...' for secret in leaked[:5]]}"
