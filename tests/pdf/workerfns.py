"""Tasks for the TimedPool tests; a module of its own so spawned workers import little."""

from __future__ import annotations

import os
import time


def square(x: int) -> int:
    return x * x


def slow_or_square(x: int) -> int:
    if x < 0:
        time.sleep(60)
    return x * x


def fail_on_odd(x: int) -> int:
    if x % 2:
        raise ValueError(f"odd input {x}")
    return x


def die_on_three(x: int) -> int:
    if x == 3:
        os._exit(7)  # a segfault in a C library looks like this to the parent
    return x
