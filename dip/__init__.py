"""Deep Image Prior (Ulyanov, Vedaldi, Lempitsky, CVPR 2018) as a tested library and command line.

`dip.restore` fits DIP to an observation through any forward operator (`dip.operators.Operator`).
"""

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["restore"]

if TYPE_CHECKING:  # type checkers and editors see the function; at run time it is imported on first use
    from dip.api import restore


def __getattr__(name: str):
    # Imported on first use: `import dip` (and so the command line's start) stays free of torch.
    if name == "restore":
        from dip.api import restore

        return restore
    raise AttributeError(f"module 'dip' has no attribute {name!r}")
