"""Dependency checks for ``/status`` that ask the dependency at most every few seconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from credenza.errors import CredenzaError
from credenza.models import Health


class HealthProbe:
    """Runs ``check`` (which raises a CredenzaError saying what is wrong) at most every
    ``interval`` seconds while the dependency is healthy, so that a monitor polling ``/status``
    does not load it; a failed dependency is asked again after ``retry_interval``, so its
    recovery shows soon. A failure a request ran into (:meth:`failed`) shows at once."""

    def __init__(self, component: str, check: Callable[[], object], interval: float = 15,
                 retry_interval: float = 1) -> None:
        self.component = component
        self.check = check
        self.interval = interval
        self.retry_interval = retry_interval
        self._last: tuple[float, Health] | None = None
        self._lock = threading.RLock()  # check() may report a failure itself

    def failed(self, detail: str) -> None:
        """Record that a request found the dependency down: ``/status`` says so now."""
        with self._lock:
            self._last = (time.monotonic(), Health(self.component, ok=False, detail=detail))

    def __call__(self) -> Health:
        with self._lock:
            now = time.monotonic()
            fresh_for = self.retry_interval if self._last and not self._last[1].ok \
                else self.interval
            if self._last is None or now - self._last[0] > fresh_for:
                try:
                    self.check()
                    health = Health(self.component, ok=True)
                except CredenzaError as exc:
                    health = Health(self.component, ok=False, detail=exc.detail)
                self._last = (now, health)
            return self._last[1]
