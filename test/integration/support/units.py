"""Sizes used everywhere: the one definition of each."""

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
PAGE = 4096  # the daemon's page, the unit of its store and of dax/mmap alignment
