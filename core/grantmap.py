"""From group names to grants: afp-core's regex mapping and an explicit table.

Any plugin that knows a principal's groups (static files, a directory) turns them into grants
here, so that every source maps groups the same way.

* ``patterns``: regular expressions with named groups ``account`` and ``role``, anchored at both
  ends as afp-core's ``provider.regex`` was: ``aws-(?P<account>\\w+)-(?P<role>\\w+)``.
* ``table``: group name -> ``["ACCOUNT/ROLE", ...]``; ``*`` as role grants every role.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import attrs

from credenza.config import Section
from credenza.models import Grant


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """An afp-style group pattern, anchored; raises ValueError saying what is wrong with it."""
    try:
        compiled = re.compile(rf"^(?:{pattern})$")
    except re.error as exc:
        raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
    if not {"account", "role"} <= set(compiled.groupindex):
        raise ValueError(f"{pattern!r} needs the named groups (?P<account>...) and (?P<role>...)")
    return compiled


def parse_pair(pair: str) -> tuple[str, str]:
    """``ACCOUNT/ROLE`` -> ``(account, role)``; raises ValueError for any other shape."""
    account, sep, role = pair.partition("/")
    if not sep or not account or not role or "/" in role:
        raise ValueError(f"expected ACCOUNT/ROLE, got {pair!r}")
    return account, role


def compile_patterns(patterns: Iterable[str], section: Section,
                     key: str = "group_patterns") -> tuple[re.Pattern[str], ...]:
    """The compiled patterns of a ``group_patterns`` setting (errors name ``key``)."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(compile_pattern(pattern))
        except ValueError as exc:
            raise section.error(key, str(exc)) from None
    return tuple(compiled)


@attrs.frozen
class GroupGrantMap:
    """Maps group names to AWS grants."""

    patterns: tuple[re.Pattern[str], ...] = ()
    table: Mapping[str, tuple[tuple[str, str], ...]] = attrs.field(factory=dict, hash=False)

    @classmethod
    def build(cls, patterns: Iterable[str], table: Mapping[str, Iterable[str]],
              section: Section) -> GroupGrantMap:
        """From the ``group_patterns`` (a list) and ``group_grants`` (group -> ACCOUNT/ROLE
        list) settings of ``section``."""
        pairs = {}
        for group, grants in table.items():
            try:
                pairs[group] = tuple(parse_pair(pair) for pair in grants)
            except ValueError as exc:
                raise section.error(f"group_grants.{group}", str(exc)) from None
        return cls(compile_patterns(patterns, section), pairs)

    def grants(self, groups: Iterable[str]) -> list[Grant]:
        """The grants ``groups`` confer, in a stable order."""
        found: list[Grant] = []
        for group in sorted(groups):
            for account, role in self.table.get(group, ()):
                found.append(Grant.aws(account, role, via=f"group {group}"))
            for pattern in self.patterns:
                match = pattern.match(group)
                if match and match.group("account") and match.group("role"):
                    found.append(Grant.aws(match.group("account"), match.group("role"),
                                           via=f"group {group} (pattern)"))
        return found
