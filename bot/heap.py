"""Python's cyclic garbage collector, told what lives as long as the process.

Each turn makes tens of thousands of short-lived objects (events read back,
features, JSON), and every so often they set off a pass of the collector
over *every* tracked object: the model, the domain, the crisis detector's
spaCy pipelines, the modules (about 500,000 objects in Rasa, 140,000 in the
action server and in the web service, counted at start). Measured on
reading back one 486-event conversation, that scanning was half the time
(19.3 ms a read with the collector as it is, 9.8 ms with it frozen).

``settle`` runs once a process has loaded what it keeps for life: it collects
once, gives the memory freed while loading back to the system
(``give_back``: loading the crisis detector's lemma tables frees most of
what it read, about 100 MB, in blocks the C allocator would otherwise keep),
then freezes what is left (``gc.freeze``: moved to a generation the
collector never scans; it is not freed either, and nothing loaded at start
would have been). Garbage made after that is collected as before.
"""

from __future__ import annotations

import ctypes
import gc
import logging

log = logging.getLogger(__name__)


def settle() -> int:
    """Collect once, then keep everything alive now out of the collector's
    passes; returns how many objects that is."""
    gc.collect()
    gc.freeze()
    give_back()
    kept = gc.get_freeze_count()
    log.info("%d objects loaded at start are left out of the garbage collector's passes", kept)
    return kept


def give_back() -> None:
    """Return the C allocator's free memory to the system (glibc's malloc_trim);
    nothing where there is no glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
