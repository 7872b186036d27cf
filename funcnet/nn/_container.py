"""Containers: Sequential, ModuleList, ModuleDict (PyTorch's names and naming)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from funcnet.nn._module import Context, Module, _unique_modules
from funcnet.nn._remat import RematPolicy, check_remat, rematerialise

__all__ = ["ModuleDict", "ModuleList", "Sequential"]


def _check_name(owner: str, name: Any) -> str:
    if not isinstance(name, str) or not name or "." in name:
        raise ValueError(
            f"{owner}: sub-module names must be non-empty strings without '.', got {name!r}"
        )
    return name


class Sequential(Module):
    """Runs layers one after another (``torch.nn.Sequential``).

    Sub-modules are named ``"0"``, ``"1"``, … (or by the keys of one mapping argument),
    so parameters are ``params["0"]["weight"]`` and flat names ``"0.weight"``, as in
    PyTorch. Plain functions (``jax.nn.relu``, ``F.relu``) may stand between layers; they
    take and return one value and count in the numbering.

    ``remat=`` recomputes each module's activations in the backward pass instead of
    keeping them: ``Sequential(a, F.relu, b, remat=True)`` is ``Sequential(Remat(a),
    F.relu, Remat(b))`` (see :class:`Remat`; functions are not wrapped, and elements that
    are already a ``Remat`` keep their policy). Names and parameters are unchanged.

    Args:
        *layers: modules or functions, or a single mapping ``name -> module``.
        remat: ``False`` (keep activations), ``True`` or ``"full"`` (keep none), a policy
            name (``"dots_saveable"``, …) or a ``jax.checkpoint_policies`` callable.
    """

    def __init__(
        self,
        *layers: Module | Callable[[Any], Any] | Mapping[str, Module],
        remat: RematPolicy = False,
    ) -> None:
        check_remat("Sequential", remat)
        if len(layers) == 1 and isinstance(layers[0], Mapping):
            items = [(_check_name("Sequential", k), v) for k, v in layers[0].items()]
        else:
            items = [(str(i), layer) for i, layer in enumerate(layers)]
        for name, layer in items:
            if not callable(layer):
                raise TypeError(
                    f"Sequential: element {name} is not a module or function: {layer!r}"
                )
        self._items = tuple((name, rematerialise(layer, remat)) for name, layer in items)

    def named_children(self) -> Iterator[tuple[str, Module]]:
        return iter(_unique_modules(self._items).items())

    def forward(self, ctx: Context, x: Any) -> Any:
        for _, layer in self._items:
            x = layer(ctx, x) if isinstance(layer, Module) else layer(x)
        return x

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Any]:
        return (layer for _, layer in self._items)

    def __getitem__(self, index: int | str) -> Any:
        if isinstance(index, str):
            return dict(self._items)[index]
        return self._items[index][1]

    def __repr__(self) -> str:
        lines = ["Sequential("]
        for name, layer in self._items:
            body = (
                repr(layer)
                if isinstance(layer, Module)
                else getattr(layer, "__name__", repr(layer))
            )
            lines.append(f"  ({name}): " + body.replace("\n", "\n  "))
        return "\n".join(lines) + "\n)"


class ModuleList(Module):
    """A list of sub-modules named ``"0"``, ``"1"``, … (``torch.nn.ModuleList``).

    Transparent: the owning module's forward iterates it and calls the elements itself
    (``for layer in self.layers: x = layer(ctx, x)``). Parameters nest under the list's
    attribute name: ``params["layers"]["0"]``, flat ``"layers.0.weight"``.

    Args:
        modules: the elements.
        remat: as :class:`Sequential`'s: each element is wrapped in :class:`Remat`
            (names and parameters unchanged).
    """

    _transparent = True

    def __init__(self, modules: Iterable[Module] = (), *, remat: RematPolicy = False) -> None:
        check_remat("ModuleList", remat)
        modules = tuple(modules)
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"ModuleList: element {i} is not a Module: {module!r}")
        self._modules = tuple(rematerialise(module, remat) for module in modules)

    def named_children(self) -> Iterator[tuple[str, Module]]:
        return iter(_unique_modules((str(i), m) for i, m in enumerate(self._modules)).items())

    def forward(self, ctx: Context, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"{ctx.path}: a ModuleList is not called; iterate it in the owner's forward"
        )

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules)

    def __getitem__(self, index: int) -> Module:
        return self._modules[index]


class ModuleDict(Module):
    """A mapping of names to sub-modules (``torch.nn.ModuleDict``); transparent like ModuleList.

    Args:
        modules: ``name -> module``.
        remat: as :class:`Sequential`'s: each entry is wrapped in :class:`Remat`.
    """

    _transparent = True

    def __init__(
        self, modules: Mapping[str, Module] | None = None, *, remat: RematPolicy = False
    ) -> None:
        check_remat("ModuleDict", remat)
        modules = dict(modules or {})
        for name, module in modules.items():
            _check_name("ModuleDict", name)
            if not isinstance(module, Module):
                raise TypeError(f"ModuleDict: entry {name!r} is not a Module: {module!r}")
        self._modules = {name: rematerialise(m, remat) for name, m in modules.items()}

    def named_children(self) -> Iterator[tuple[str, Module]]:
        return iter(_unique_modules(self._modules.items()).items())

    def forward(self, ctx: Context, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{ctx.path}: a ModuleDict is not called; index it in the owner's forward")

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __getitem__(self, name: str) -> Module:
        return self._modules[name]

    def keys(self) -> Iterable[str]:
        return self._modules.keys()

    def values(self) -> Iterable[Module]:
        return self._modules.values()

    def items(self) -> Iterable[tuple[str, Module]]:
        return self._modules.items()
