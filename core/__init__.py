"""credenza: a pluggable credential broker.

Plugins use :data:`hookimpl`; embedding applications use :class:`Broker` and
:func:`credenza.wsgi.make_app`.
"""


def __getattr__(name: str) -> object:
    # Loaded when asked for: the broker pulls in stevedore and werkzeug, the hook marker pluggy,
    # the version importlib.metadata; a credential_process call (credenza.entry) needs none.
    if name == "Broker":
        from credenza.broker import Broker

        return Broker
    if name == "hookimpl":
        from credenza.markers import hookimpl

        return hookimpl
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("credenza")
        except PackageNotFoundError:  # a source tree that was never installed
            return "0.0.0"
    raise AttributeError(f"module 'credenza' has no attribute {name!r}")


__all__ = ["Broker", "__version__", "hookimpl"]
