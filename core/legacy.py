"""afp-core's configuration, read unchanged and turned into a credenza configuration.

afp-core read two YAML trees named by ``CONFIG_PATH`` and ``ACCOUNT_CONFIG_PATH`` (the process
environment, or Apache's ``SetEnv`` in the WSGI environ). They become:

==========================================  ====================================================
afp-core                                    credenza
==========================================  ====================================================
api.user_identification.environment_field   ``[plugins.environ] field``
aws.access_key / aws.secret_key             ``[plugins.aws-sts] access_key_id / secret_access_key``
provider.regex                              ``[plugins.static] group_patterns``
ACCOUNT_CONFIG_PATH (``alias: {id: ...}``)  ``[plugins.static] afp_accounts``
provider.module (LDAP) + ldap_* keys        ``[plugins.ldap]``
log_level, log_format, logging_handler      Python logging, configured when the app starts
==========================================  ====================================================
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from credenza.config import Config
from credenza.errors import ConfigError
from credenza.yamltree import load_tree

CONFIG_PATH = "CONFIG_PATH"
ACCOUNT_CONFIG_PATH = "ACCOUNT_CONFIG_PATH"
LDAP_KEYS = {"ldap_uri": "url", "ldap_base_users": "user_base", "ldap_base_groups": "group_base",
             "ldap_bind_dn": "bind_dn", "ldap_bind_password": "bind_password"}


def _get(tree: Mapping[str, Any], dotted: str, source: str, default: Any = None) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping):
            raise ConfigError(f"{source}: {dotted}: expected a mapping at {part!r}")
        node = node.get(part)
        if node is None:
            return default
    return node


def afp_config(environ: Mapping[str, str]) -> Config:
    """The configuration afp-core's ``CONFIG_PATH``/``ACCOUNT_CONFIG_PATH`` describe."""
    config_path = Path(environ[CONFIG_PATH])
    if not environ.get(ACCOUNT_CONFIG_PATH):
        raise ConfigError(f"{CONFIG_PATH} is set, so {ACCOUNT_CONFIG_PATH} must be too "
                          "(afp-core's account configuration)")
    tree = load_tree(config_path)
    source = f"afp-core configuration {config_path}"
    field = _get(tree, "api.user_identification.environment_field", source, "REMOTE_USER")
    plugins: dict[str, dict[str, Any]] = {
        "environ": {"field": field, "kind": "machine" if field == "REMOTE_ADDR" else "user"},
        "static": {"afp_accounts": str(Path(environ[ACCOUNT_CONFIG_PATH]).resolve())},
    }
    regex = _get(tree, "provider.regex", source)
    if regex:
        plugins["static"]["group_patterns"] = [regex]
    module = str(_get(tree, "provider.module", source, ""))
    if module:
        if "ldap" not in module.lower():
            raise ConfigError(f"{source}: provider.module: {module!r} is not supported; credenza "
                              "reads afp-core's LDAP provider settings, other sources need a "
                              "credenza configuration")
        provider = _get(tree, "provider", source, {})
        plugins["ldap"] = {new: provider[old] for old, new in LDAP_KEYS.items()
                           if provider.get(old) is not None}
    sts: dict[str, Any] = {}
    if _get(tree, "aws.access_key", source):
        sts = {"access_key_id": _get(tree, "aws.access_key", source),
               "secret_access_key": _get(tree, "aws.secret_key", source)}
    plugins["aws-sts"] = sts
    order = ["environ", "static", *(["ldap"] if "ldap" in plugins else []), "aws-sts"]
    core: dict[str, Any] = {"plugins": order}
    level = str(_get(tree, "log_level", source, "INFO")).upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"{source}: log_level: expected DEBUG, INFO, WARNING or ERROR, "
                          f"got {level!r}")
    core["log_level"] = level
    table = {"credenza": core, "plugins": plugins}
    return Config.from_mapping(table, source, config_path.parent if config_path.is_file()
                               else config_path, {})


def configure_afp_logging(environ: Mapping[str, str]) -> None:
    """Set up logging as afp-core's ``logging_handler``, ``log_level`` and ``log_format`` say."""
    config_path = Path(environ[CONFIG_PATH])
    tree = load_tree(config_path)
    source = f"afp-core configuration {config_path}"
    spec = _get(tree, "logging_handler", source)
    if not spec:
        return
    try:
        module = importlib.import_module(spec["module"])
        handler_class = getattr(module, spec["class"])
        handler = handler_class(*spec.get("args", []), **spec.get("kwargs", {}))
    except (ImportError, AttributeError, KeyError, TypeError, OSError) as exc:
        raise ConfigError(f"{source}: logging_handler: cannot make the handler: "
                          f"{type(exc).__name__}: {exc}") from None
    fmt = _get(tree, "log_format", source)
    if fmt:
        handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(str(_get(tree, "log_level", source, "INFO")).upper())
