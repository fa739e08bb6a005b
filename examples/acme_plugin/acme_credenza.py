"""ACME's credenza plugin: people identify with a signed badge; their team decides their grants.

A badge is ``USER:TEAM:SIGNATURE`` in the ``X-Acme-Badge`` header, the signature being the hex
HMAC-SHA256 of ``USER:TEAM`` under a shared secret. Configuration::

    [credenza]
    plugins = ["acme"]

    [plugins.acme]
    badge_secret = "env:ACME_BADGE_SECRET"
    [plugins.acme.teams]
    platform = ["prod/admin", "dev/admin"]
    data = ["dev/analyst"]
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

import attrs
import click

from credenza import hookimpl
from credenza.config import Section
from credenza.errors import Unauthenticated
from credenza.models import Grant, IdentityRequest, Principal
from credenza.settings import read, setting


@attrs.frozen
class AcmeSettings:
    """``[plugins.acme]``: declared once; `credenza config reference acme` shows them."""

    badge_secret: str = setting("The HMAC-SHA256 key badges are signed with", secret=True)
    teams: Mapping[str, tuple[str, ...]] = setting("Team -> its ACCOUNT/ROLE grants", {})


class AcmeBadges:
    """An identity source (badges) and a grant source (team -> account/role pairs)."""

    settings = AcmeSettings

    def __init__(self, section: Section) -> None:
        settings = read(AcmeSettings, section)
        self.secret = settings.badge_secret.encode()
        self.teams = dict(settings.teams)
        for team, pairs in self.teams.items():
            for pair in pairs:
                if pair.count("/") != 1:
                    raise section.error(f"teams.{team}",
                                        f"expected ACCOUNT/ROLE entries, got {pair!r}")

    def sign(self, user: str, team: str) -> str:
        """The badge for ``user`` in ``team``."""
        mac = hmac.new(self.secret, f"{user}:{team}".encode(), hashlib.sha256).hexdigest()
        return f"{user}:{team}:{mac}"

    @hookimpl
    def credenza_identify(self, request: IdentityRequest) -> Principal | None:
        badge = request.environ.get("HTTP_X_ACME_BADGE")
        if not badge:
            return None
        user, _, team = badge.rpartition(":")[0].partition(":")
        if not user or not team or not hmac.compare_digest(self.sign(user, team), badge):
            raise Unauthenticated("invalid ACME badge", challenges=('AcmeBadge realm="acme"',))
        return Principal(user, source="acme", groups=[team])

    @hookimpl
    def credenza_grants(self, principal: Principal) -> list[Grant]:
        return [
            Grant.aws(*pair.split("/"), via=f"acme team {team}")
            for team in sorted(principal.groups & self.teams.keys())
            for pair in self.teams[team]
        ]

    @hookimpl
    def credenza_commands(self, cli: click.Group) -> None:
        @cli.command(name="acme-badge")
        @click.argument("user")
        @click.argument("team")
        def acme_badge(user: str, team: str) -> None:
            """Print the ACME badge of USER in TEAM."""
            click.echo(self.sign(user, team))
