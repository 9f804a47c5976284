"""sqlrooms_nb: a collaborative SQL notebook for marimo and Jupyter.

Cells live in a Loro CRDT document shared by every browser view and the kernel; the kernel
persists the document's history to DuckLake. Start with :class:`SqlRoom`::

    import sqlrooms_nb as snb
    room = snb.SqlRoom("sales-review", author="ana")
    room.add_cell("select 42 as answer", name="answer")
    room            # shows the notebook widget
"""

from . import errors
from .notebook import Cell
from .room import SqlRoom
from .store.config import LakeConfig

__all__ = ["Cell", "LakeConfig", "SqlRoom", "errors"]
__version__ = "0.1.0"
