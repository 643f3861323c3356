"""emlab: an open lab for emergent misalignment."""

from emlab.errors import EmlabError

__version__ = "0.1.0"
__all__ = ["EmlabError", "__version__"]
