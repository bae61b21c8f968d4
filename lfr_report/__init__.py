"""lfr: tracked representation-learning experiments and the PDF reports built from them."""

import warnings

# Sacred 0.8.7 imports pkg_resources (kept by our setuptools<81 pin), which warns on import.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

__version__ = "0.1.0"
