"""Dependency checks for ``/status`` that ask the dependency at most every few seconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from credenza.errors import CredenzaError
from credenza.models import Health


class HealthProbe:
    """Runs ``check`` (which raises a CredenzaError saying what is wrong) at most every
    ``interval`` seconds, so that a monitor polling ``/status`` does not load the dependency."""

    def __init__(self, component: str, check: Callable[[], object], interval: float = 15) -> None:
        self.component = component
        self.check = check
        self.interval = interval
        self._last: tuple[float, Health] | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Health:
        with self._lock:
            now = time.monotonic()
            if self._last is None or now - self._last[0] > self.interval:
                try:
                    self.check()
                    health = Health(self.component, ok=True)
                except CredenzaError as exc:
                    health = Health(self.component, ok=False, detail=exc.detail)
                self._last = (now, health)
            return self._last[1]
