"""Plugin discovery and registration: stevedore finds them, pluggy calls them.

Every plugin is an entry point in the group ``credenza.plugins``. The entry point names a module
(registered as it is) or a class (instantiated with its ``[plugins.NAME]`` Section). stevedore
loads exactly the plugins the configuration enables, in its order; each is then registered in a
fresh ``pluggy.PluginManager`` (one per broker, so loading twice in one process is safe).

Any failure is a :class:`~credenza.errors.ConfigError` naming the plugin and the cause: an unknown
name, an import error, bad settings, a hook implementation that matches no hook specification.
"""

from __future__ import annotations

import importlib.metadata
import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import pluggy
from stevedore import NamedExtensionManager

from credenza import hookspecs
from credenza.config import Config
from credenza.errors import ConfigError
from credenza.markers import PROJECT

NAMESPACE = "credenza.plugins"
HOOK_PREFIX = "credenza_"


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, taking ``credenza_*`` functions as hook implementations even unmarked.

    As pytest does with ``pytest_*``: a plugin author who forgets ``@hookimpl`` gets a working
    hook (or, for a misspelled name, a startup error), never a silently ignored function.
    """

    def __init__(self) -> None:
        super().__init__(PROJECT)
        self.add_hookspecs(hookspecs)
        self._each: dict[str, list[tuple[str, Callable[..., list[Any]]]]] = {}

    def register(self, plugin: object, name: str | None = None) -> str | None:
        self._each.clear()
        return super().register(plugin, name)

    def each(self, hook_name: str) -> list[tuple[str, Callable[..., list[Any]]]]:
        """(plugin name, a caller of only that plugin's implementation) for every plugin that
        implements ``hook_name``, in call order.

        For hooks whose implementations must not stop one another (observers, health checks):
        the broker calls each on its own and survives a failing one. Each call still goes
        through pluggy (``subset_hook_caller``), so its tracing and monitoring see it.
        """
        callers = self._each.get(hook_name)
        if callers is None:
            impls = list(reversed(getattr(self.hook, hook_name).get_hookimpls()))
            callers = [(impl.plugin_name, self.subset_hook_caller(
                hook_name, [other.plugin for other in impls if other is not impl]))
                for impl in impls]
            self._each[hook_name] = callers
        return callers

    def parse_hookimpl_opts(self, plugin: object, name: str) -> pluggy.HookimplOpts | None:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith(HOOK_PREFIX) and callable(getattr(plugin, name)):
            opts = {}  # pluggy fills in the defaults
        return opts


class _NamedExtensionManager(NamedExtensionManager):
    """stevedore's manager without its process-wide entry point list.

    ``ExtensionManager.ENTRY_POINT_CACHE`` is shared by every manager of a process and never
    refreshed, so a plugin installed after the first load (an embedding app, a test) stayed
    invisible. Each load gets its own; stevedore's file cache, keyed by sys.path and mtimes,
    still makes discovery cheap.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.ENTRY_POINT_CACHE = {}
        super().__init__(*args, **kwargs)


def hook_names(plugin: object) -> tuple[str, ...]:
    """The hooks a plugin (module, class or instance) implements."""
    return tuple(sorted(
        name for name in dir(plugin)
        if name.startswith(HOOK_PREFIX) and callable(getattr(plugin, name, None))
    ))


def load_plugins(config: Config, extra: Sequence[object] = ()) -> PluginManager:
    """Load the plugins ``config`` enables and register them, ``extra`` objects first in line.

    ``extra`` is for embedding applications that bring their own plugin objects; they are asked
    before the configured plugins.
    """
    where = f"{config.source}: [credenza] plugins: "
    loaded = [(name, _instantiate(name, plugin, config))
              for name, plugin in _load(config.plugins, where)]
    pm = PluginManager()
    # pluggy calls the last registered implementation first: register in reverse so that calls
    # follow the configured order, and the embedding application's own plugins come first of all.
    for name, obj in reversed(loaded):
        _register(pm, obj, name, where)
    names = [f"app:{type(obj).__name__}" for obj in extra]
    names = [name if names.count(name) == 1 else f"{name}#{i}" for i, name in enumerate(names)]
    for name, obj in reversed(list(zip(names, extra, strict=True))):
        _register(pm, obj, name, "")
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigError(f"{where}plugin {pm.get_name(exc.plugin)!r}: {_oneline(exc)}") from None
    return pm


def _load(names: Sequence[str], where: str) -> list[tuple[str, Any]]:
    if not names:
        return []

    def missing(absent: Iterable[str]) -> None:
        installed = ", ".join(sorted({ep.name for ep in _entry_points()})) or "none"
        raise ConfigError(f"{where}plugin {sorted(absent)[0]!r} is not installed (no entry point "
                          f"in group {NAMESPACE!r}; installed: {installed})")

    def failed(_manager: object, entry_point: Any, exc: BaseException) -> None:
        raise ConfigError(f"{where}plugin {entry_point.name!r} ({entry_point.value}) failed to "
                          f"load: {type(exc).__name__}: {exc}") from exc

    # stevedore would silently take one of two distributions declaring the same name.
    declared: dict[str, list[str]] = {}
    for ep in _entry_points():
        declared.setdefault(ep.name, []).append(ep.dist.name if ep.dist else ep.value)
    for name in names:
        if len(declared.get(name, ())) > 1:
            raise ConfigError(f"{where}plugin {name!r} is declared twice: by "
                              f"{' and by '.join(sorted(declared[name]))}; uninstall one")
    manager = _NamedExtensionManager(
        NAMESPACE, names=list(names), name_order=True, invoke_on_load=False,
        on_load_failure_callback=failed, on_missing_entrypoints_callback=missing,
    )
    return [(ext.name, ext.plugin) for ext in manager.extensions]


def _instantiate(name: str, plugin: Any, config: Config) -> object:
    section = config.section(name)
    if not inspect.isclass(plugin):
        if section.values:
            raise section.error(next(iter(section.values)), f"plugin {name!r} is a module and "
                                "takes no settings")
        return plugin
    try:
        obj = plugin(section)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{config.source}: [plugins.{name}]: plugin {name!r} could not start: "
                          f"{type(exc).__name__}: {exc}") from exc
    section.check_unknown()
    return obj


def _register(pm: PluginManager, obj: object, name: str, where: str) -> None:
    try:
        pm.register(obj, name=name)
    except pluggy.PluginValidationError as exc:
        raise ConfigError(f"{where}plugin {name!r}: {_oneline(exc)}") from None


def _oneline(exc: Exception) -> str:
    """pluggy's messages span lines; a startup error reads better on one."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


@attrs.frozen
class PluginInfo:
    """One installed plugin, as ``credenza plugins`` shows it."""

    name: str
    target: str
    distribution: str | None
    version: str | None
    enabled: bool
    hooks: tuple[str, ...]
    error: str | None = None
    #: the class declaring its ``[plugins.NAME]`` settings (``credenza.settings``), if any
    settings: type | None = attrs.field(default=None, eq=False)


def installed_plugins(enabled: Sequence[str] = ()) -> list[PluginInfo]:
    """Every plugin installed in this environment, whether enabled or not, with its hooks."""
    infos = []
    for ep in sorted(_entry_points(), key=lambda ep: (ep.name, ep.value)):
        hooks: tuple[str, ...] = ()
        error = settings = None
        try:
            plugin = ep.load()
            hooks, settings = hook_names(plugin), getattr(plugin, "settings", None)
        except Exception as exc:  # shown, not raised: listing must survive a broken plugin
            error = f"{type(exc).__name__}: {exc}"
        dist = ep.dist
        infos.append(PluginInfo(
            name=ep.name, target=ep.value, distribution=dist.name if dist else None,
            version=dist.version if dist else None, enabled=ep.name in enabled,
            hooks=hooks, error=error, settings=settings if attrs.has(settings) else None,
        ))
    return infos


def _entry_points() -> importlib.metadata.EntryPoints:
    return importlib.metadata.entry_points(group=NAMESPACE)
