"""credenza: a pluggable credential broker.

Plugins use :data:`hookimpl`; embedding applications use :class:`Broker` and
:func:`credenza.wsgi.make_app`.
"""

from importlib.metadata import PackageNotFoundError, version

from credenza.markers import hookimpl

try:
    __version__ = version("credenza")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"


def __getattr__(name: str) -> object:
    # The broker pulls in stevedore and werkzeug: load it only when asked for, so that a plugin
    # importing `hookimpl` stays cheap.
    if name == "Broker":
        from credenza.broker import Broker

        return Broker
    raise AttributeError(f"module 'credenza' has no attribute {name!r}")


__all__ = ["Broker", "__version__", "hookimpl"]
