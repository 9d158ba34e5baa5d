"""Register SSVD-O with peft whenever peft gets imported, in either import order.

``import cl_ssvdo`` does not import peft (it takes seconds). If peft is already imported,
``cl_ssvdo`` registers SSVD-O at once; otherwise :func:`install` puts a finder on
``sys.meta_path`` that wraps peft's loader, so the registration runs right after
``peft/__init__.py`` has executed. Both orders therefore load saved SSVD-O adapters::

    import cl_ssvdo, peft                 # or: import peft, cl_ssvdo
    peft.PeftModel.from_pretrained(model, "adapter_folder")

Torch and the standard library only (peft is imported by the registration, not here).

>>> install()  # idempotent
>>> any(isinstance(f, PeftImportHook) for f in sys.meta_path) or "peft" in sys.modules
True
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType
from typing import Any

__all__ = ["PeftImportHook", "install", "register_now"]

REGISTRATION_MODULE = "cl_ssvdo.ssvdo.peft_registration"


def register_now() -> None:
    """Import the registration module (registers SSVD-O with the imported peft)."""
    try:
        importlib.import_module(REGISTRATION_MODULE)
    except Exception as exc:  # never break `import peft` itself
        warnings.warn(
            f"cl_ssvdo could not register SSVD-O with peft ({type(exc).__name__}: {exc}); "
            "saved SSVD-O adapters will not load: `import cl_ssvdo.ssvdo.peft_registration` "
            "to see the full error",
            RuntimeWarning,
            stacklevel=2,
        )


class _RegisteringLoader(importlib.abc.Loader):
    """Delegates to peft's own loader, then registers SSVD-O."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _remove_hooks()
        register_now()

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self._loader, name)


class PeftImportHook(importlib.abc.MetaPathFinder):
    """Meta-path finder that only intercepts the top-level ``peft`` package (a spec lookup
    without import, e.g. ``importlib.util.find_spec("peft")``, leaves it in place)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname != "peft":
            return None
        for finder in sys.meta_path:
            if isinstance(finder, PeftImportHook):
                continue
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


def _remove_hooks() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, PeftImportHook)]


def install() -> None:
    """Register now if peft is imported, else once peft gets imported (idempotent)."""
    if "peft" in sys.modules:
        register_now()
        return
    if not any(isinstance(f, PeftImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, PeftImportHook())
