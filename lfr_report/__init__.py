"""lfr: tracked representation-learning experiments and the PDF reports built from them."""

__version__ = "0.1.0"
