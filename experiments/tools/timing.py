"""Wall-clock timing shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import jax


def median_ms(programs: list[Callable], args: tuple, repeats: int) -> list[float]:
  """Median wall-clock milliseconds of each program, calls alternating between them."""
  for program in programs:
    jax.block_until_ready(program(*args))
  times = [[] for _ in programs]
  for _ in range(repeats):
    for program, program_times in zip(programs, times):
      start = time.perf_counter()
      jax.block_until_ready(program(*args))
      program_times.append(time.perf_counter() - start)
  return [1000 * statistics.median(program_times) for program_times in times]
