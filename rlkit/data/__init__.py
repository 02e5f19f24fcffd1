"""Offline datasets: the :class:`Dataset` type and its sources (D4RL hdf5, Minari, local collection)."""

from rlkit.data.d4rl import D4RL_DATASETS, load_d4rl_file
from rlkit.data.dataset import ARRAY_KEYS, Dataset
from rlkit.data.hdf5 import write_d4rl
from rlkit.data.minari import MINARI_IDS
from rlkit.data.sources import SOURCES, data_dir, download, format_info, info, load

__all__ = [
    "ARRAY_KEYS",
    "D4RL_DATASETS",
    "MINARI_IDS",
    "SOURCES",
    "Dataset",
    "data_dir",
    "download",
    "format_info",
    "info",
    "load",
    "load_d4rl_file",
    "write_d4rl",
]
