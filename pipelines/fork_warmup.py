"""Imported last by the run launcher's fork server, after the heavy modules: freezes everything loaded so
far out of the cyclic garbage collector.

A forked run worker inherits ~200k tracked objects; each of its full collections used to walk them all
(100-250 ms here, and a copy-on-write fault on every page it touched). Frozen, they are never scanned:
a worker's collections cost what its own objects do (~1 ms for the first). Nothing inherited is freed by
this: modules live as long as the process anyway.
"""

import gc

gc.freeze()
