"""Deep Image Prior (Ulyanov, Vedaldi, Lempitsky, CVPR 2018) as a tested library and command line.

`dip.restore` fits DIP to an observation through any forward operator (`dip.operators.Operator`);
`dip.run_fit(dip.FitRequest(...))` is `dip fit` as one Python call (`dip.request`); `dip.load_network`
rebuilds a network a fit kept (`dip.saved_network`); `dip.restore_tiled` restores an image too large for one
fit in overlapping tiles (`dip.tiles`).
"""

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["restore", "FitRequest", "run_fit", "load_network", "restore_tiled"]

if TYPE_CHECKING:  # type checkers and editors see the names; at run time each is imported on first use
    from dip.api import restore
    from dip.request import FitRequest, run_fit
    from dip.saved_network import load_network
    from dip.tiles import restore_tiled

_LAZY = {
    "restore": "dip.api",
    "FitRequest": "dip.request",
    "run_fit": "dip.request",
    "load_network": "dip.saved_network",
    "restore_tiled": "dip.tiles",
}


def __getattr__(name: str):
    # Imported on first use: `import dip` (and so the command line's start) stays free of torch.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dip' has no attribute {name!r}")
