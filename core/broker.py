"""The Broker: the single path from a request to a credential.

    identify -> groups -> grants -> authorize -> issue -> record -> observers

Front ends (the WSGI app, the CLI, an embedding application) call the methods of one Broker; they
never call hooks themselves. Each method is a typed wrapper around the hooks it needs.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from credenza.config import Config
from credenza.errors import BadRequest, Forbidden, NotConfigured, NotFound, Unauthenticated
from credenza.loader import PluginManager, load_plugins
from credenza.models import (
    WILDCARD,
    Account,
    AwsCredentials,
    AwsOptions,
    DeniedEvent,
    Grant,
    Health,
    IdentityRequest,
    IssuedEvent,
    Principal,
)

log = logging.getLogger(__name__)

# ASCII only: look-alike letters, path separators and dot segments never name anything.
ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ROLE_NAME = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,64}$")


class Broker:
    """Answers who is calling, what they may use, and hands out credentials for it."""

    def __init__(self, config: Config, plugin_manager: PluginManager) -> None:
        self.config = config
        self.plugin_manager = plugin_manager
        self._hook = plugin_manager.hook

    @classmethod
    def from_config(
        cls,
        source: Config | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        *,
        plugins: Sequence[object] = (),
    ) -> Broker:
        """Load the configuration and the plugins it enables.

        :param source: a loaded Config, an already parsed mapping (as TOML would give it), a
            file path, or None for ``$CREDENZA_CONFIG`` / the embedded default.
        :param plugins: plugin objects of an embedding application, asked before configured ones.
        :raises credenza.errors.ConfigError: naming the file, key or plugin that is wrong.
        """
        if isinstance(source, Config):
            config = source
        elif isinstance(source, Mapping):
            config = Config.from_mapping(source)
        else:
            config = Config.load(source)
        return cls(config, load_plugins(config, plugins))

    # -- identity ---------------------------------------------------------------------------

    def identify(self, request: IdentityRequest) -> Principal:
        """The caller, with all its groups.

        :raises Unauthenticated: when nobody recognises the caller, or credentials are wrong.
        """
        try:
            principal = self._hook.credenza_identify(request=request)
        except Unauthenticated as exc:
            self._denied(DeniedEvent(None, "identity", request.remote_addr or "-", exc.detail))
            raise
        if principal is None:
            presented = request.basic or request.bearer or request.api_key
            detail = "invalid credentials" if presented else "no valid credentials were presented"
            raise Unauthenticated(detail, challenges=self._challenges())
        return self.enrich(principal)

    def enrich(self, principal: Principal) -> Principal:
        """``principal`` with the groups every group source knows for it."""
        groups = itertools.chain.from_iterable(
            self._hook.credenza_principal_groups(principal=principal)
        )
        return principal.with_groups(groups)

    def _challenges(self) -> tuple[str, ...]:
        realm = self.config.server.realm.replace('"', "")
        return (f'Basic realm="{realm}"', f'Bearer realm="{realm}"')

    # -- what the caller may use -------------------------------------------------------------

    def grants(self, principal: Principal) -> tuple[Grant, ...]:
        """Every grant of ``principal``, de-duplicated, in plugin order."""
        merged = itertools.chain.from_iterable(self._hook.credenza_grants(principal=principal))
        return tuple(dict.fromkeys(merged))

    def authorize(
        self, principal: Principal, kind: str, target: str, role: str | None = None
    ) -> Grant:
        """The grant that permits ``kind``/``target``/``role``.

        :raises Forbidden: when there is none (observers hear of it).
        """
        for grant in self.grants(principal):
            if grant.permits(kind, target, role):
                return grant
        what = f"{kind} {target}" + (f" role {role}" if role else "")
        reason = f"{principal.name} has no grant for {what}"
        self._denied(DeniedEvent(principal, kind, target, reason, role=role))
        raise Forbidden(reason)

    def accounts(self) -> dict[str, Account]:
        """The account catalogue by name; the first plugin to name an account wins."""
        catalogue: dict[str, Account] = {}
        for account in itertools.chain.from_iterable(self._hook.credenza_accounts()):
            catalogue.setdefault(account.name, account)
        return catalogue

    def account(self, name: str) -> Account:
        """One account of the catalogue.

        :raises BadRequest: for a name no account could have. :raises NotFound: for an unknown one.
        """
        if not ACCOUNT_NAME.match(name) or not name.strip("."):
            raise BadRequest(f"{name!r} is not a valid account name ({ACCOUNT_NAME.pattern})")
        try:
            return self.accounts()[name]
        except KeyError:
            raise NotFound(f"unknown account {name!r}") from None

    def aws_roles(self, principal: Principal) -> dict[str, list[str]]:
        """Account name -> the roles ``principal`` may assume there, sorted.

        Only accounts in the catalogue, and only named roles: a wildcard grant permits any role
        but names none to list.
        """
        catalogue = self.accounts()
        roles: dict[str, set[str]] = {}
        for grant in self.grants(principal):
            if grant.kind == "aws" and grant.target in catalogue and grant.role != WILDCARD:
                roles.setdefault(grant.target, set()).add(grant.role or "")
        return {account: sorted(names) for account, names in sorted(roles.items())}

    # -- issuing ------------------------------------------------------------------------------

    def issue_aws(
        self, principal: Principal, account_name: str, role: str, options: AwsOptions
    ) -> tuple[Account, AwsCredentials]:
        """Temporary AWS credentials for ``role`` in ``account_name``, if a grant permits them.

        :raises NotFound: unknown account. :raises Forbidden: no grant.
        :raises NotConfigured: no enabled plugin issues AWS credentials.
        """
        if not ROLE_NAME.match(role) or not role.strip("."):  # "." and ".." are path segments
            raise BadRequest(f"{role!r} is not a valid IAM role name ({ROLE_NAME.pattern})")
        account = self.account(account_name)
        grant = self.authorize(principal, "aws", account.name, role)
        # The grant may be a wildcard: the role asked for is the one to issue.
        grant = Grant.aws(account.name, role, via=grant.via)
        credentials = self._hook.credenza_issue_aws(
            principal=principal, account=account, grant=grant, options=options
        )
        if credentials is None:
            raise NotConfigured("no enabled plugin issues AWS credentials (enable aws-sts)")
        self._observe("credenza_issued", event=IssuedEvent(
            principal, "aws", account.name, role=role, expires_at=credentials.expiration
        ))
        return account, credentials

    def console_url(self, principal: Principal, account: Account, credentials: AwsCredentials,
                    options: AwsOptions) -> str:
        """An AWS console sign-in URL for ``credentials`` (a secret: never log it).

        :raises BadRequest: for a callback URL outside the allowlist.
        :raises NotConfigured: when no enabled plugin makes console URLs.
        """
        url = self._hook.credenza_console_url(principal=principal, account=account,
                                              credentials=credentials, options=options)
        if url is None:
            raise NotConfigured("no enabled plugin makes console sign-in URLs (enable aws-sts)")
        return url

    # -- operations ---------------------------------------------------------------------------

    def health(self) -> list[Health]:
        """The health of every dependency the plugins report; a failing check reports itself."""
        report: list[Health] = []
        for impl in _in_call_order(self._hook.credenza_health):
            try:
                report.extend(impl.function())
            except Exception as exc:  # a broken health check is itself a failed check
                log.exception("health check of plugin %s failed", impl.plugin_name)
                report.append(Health(impl.plugin_name, ok=False,
                                     detail=f"health check raised {type(exc).__name__}"))
        return report

    def plugin_names(self) -> list[str]:
        """The names of the registered plugins, in the order they are asked."""
        return [name for name, _ in reversed(self.plugin_manager.list_name_plugin())]

    def close(self) -> None:
        """Let every plugin release its connections."""
        self._hook.credenza_shutdown()

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- observers ----------------------------------------------------------------------------

    def _denied(self, event: DeniedEvent) -> None:
        self._observe("credenza_denied", event=event)

    def _observe(self, hook_name: str, **kwargs: Any) -> None:
        """Call every observer; one that fails is logged and does not stop the others."""
        for impl in _in_call_order(getattr(self._hook, hook_name)):
            try:
                impl.function(**{name: kwargs[name] for name in impl.argnames})
            except Exception:
                log.exception("observer %s of plugin %s failed", hook_name, impl.plugin_name)



def _in_call_order(hook: Any) -> list[Any]:
    """The implementations of ``hook`` in the order pluggy would call them."""
    return list(reversed(hook.get_hookimpls()))
