"""Deep Image Prior (Ulyanov, Vedaldi, Lempitsky, CVPR 2018) as a tested library and command line."""
__version__ = "0.1.0"
