"""The pluggy project name and the two markers every credenza plugin uses.

Typed so that type checkers see through the decorators (as tox does): ``@hookimpl`` returns the
function it decorates unchanged.
"""

from collections.abc import Callable
from typing import Any, TypeVar

import pluggy

PROJECT = "credenza"

_F = TypeVar("_F", bound=Callable[..., Any])

hookspec: Callable[..., Any] = pluggy.HookspecMarker(PROJECT)
hookimpl: Callable[..., Callable[[_F], _F]] | Callable[[_F], _F] = pluggy.HookimplMarker(PROJECT)
