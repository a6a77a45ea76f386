"""The proxy's monotonic clock: ``monotonic()``, float seconds.

Run as source this is ``time.monotonic``. The compiled core cimports
``clock.pxd`` instead, whose inline ``monotonic`` reads the same clock
(``clock_gettime(CLOCK_MONOTONIC)``, as CPython does on Linux) and converts
it to seconds the way CPython does, so the two are interchangeable value for
value; compiled, a read is a C call returning a C double rather than a call
into the interpreter and a float object (a proxied request reads the clock
about eight times). This module itself is never compiled.
"""

from time import monotonic

__all__ = ["monotonic"]
