"""Data and file I/O the way a user's program does it: patterns, checksums, pwrite/pread,
O_DIRECT, mmap, fallocate, page-cache drops, SEEK_DATA ranges. Standard library only.

Naming: write_file/read_file work on an existing file (a disk) at an offset, looping until
done; create_file makes (or truncates) a file and writes it whole, as a program writing a
file into a filesystem does.
"""

import ctypes
import errno
import hashlib
import mmap
import os
import random

from .units import MiB, PAGE

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_ZERO_RANGE = 0x10

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_libc.fallocate.restype = ctypes.c_int


def pattern(length, seed=1):
    """`length` deterministic bytes, different for every seed and every page (so data that
    lands at the wrong offset is caught), with no long zero runs (so nothing reads back as
    a hole by accident)."""
    data = bytearray(random.Random(seed).randbytes(length))
    for i in range(0, length, 251):
        data[i] |= 1
    return bytes(data)


def sha(data):
    """A short hex digest of bytes, for messages."""
    return hashlib.sha256(data).hexdigest()[:16]


def sha256_file(path, chunk=4 * MiB):
    """sha256 hex digest of a whole file or device."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def fallocate(fd, mode, offset, length):
    """fallocate(2) with an explicit mode; raises OSError with the errno."""
    if _libc.fallocate(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"fallocate(mode={mode:#x}, {offset}, {length}): {os.strerror(err)}")


def pwrite_all(fd, data, offset):
    """pwrite until everything is written; raises on error (also mid-way)."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        n = os.pwrite(fd, view[done:], offset + done)
        if n <= 0:
            raise OSError(errno.EIO, f"pwrite returned {n}")
        done += n


def pread_all(fd, length, offset):
    """pread until `length` bytes or end of file."""
    out = bytearray()
    while len(out) < length:
        chunk = os.pread(fd, length - len(out), offset + len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def write_file(path, data, offset=0):
    """Writes `data` at `offset` of an existing file (no create, no truncate)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        pwrite_all(fd, data, offset)
    finally:
        os.close(fd)


def read_file(path, length, offset=0):
    fd = os.open(path, os.O_RDONLY)
    try:
        return pread_all(fd, length, offset)
    finally:
        os.close(fd)


def create_file(path, data, fsync=True):
    """Creates (or truncates) `path` and writes `data`; fsync unless told not to."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        if fsync:
            os.fsync(f.fileno())


def aligned_buffer(length):
    """A page-aligned anonymous buffer (what O_DIRECT wants)."""
    return mmap.mmap(-1, max(length, PAGE))


def odirect_pwrite(path, data, offset):
    """Writes `data` at `offset` through an O_DIRECT fd; offset/length must be 512-aligned."""
    assert offset % 512 == 0 and len(data) % 512 == 0, "O_DIRECT needs 512-byte alignment"
    buf = aligned_buffer(len(data))
    buf[:len(data)] = data
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    try:
        n = os.pwritev(fd, [memoryview(buf)[:len(data)]], offset)
        assert n == len(data), f"O_DIRECT write of {len(data)} at {offset} returned {n}"
    finally:
        os.close(fd)
        buf.close()


def odirect_pread(path, length, offset):
    assert offset % 512 == 0 and length % 512 == 0, "O_DIRECT needs 512-byte alignment"
    buf = aligned_buffer(length)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        n = os.preadv(fd, [memoryview(buf)[:length]], offset)
        assert n == length, f"O_DIRECT read of {length} at {offset} returned {n}"
        return bytes(buf[:length])
    finally:
        os.close(fd)
        buf.close()


def mmap_read(path, length, offset):
    """Reads through a fresh MAP_SHARED mapping (offset page-aligned)."""
    assert offset % PAGE == 0
    fd = os.open(path, os.O_RDONLY)
    try:
        with mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ, offset=offset) as mm:
            return bytes(mm[:length])
    finally:
        os.close(fd)


def mmap_write(path, data, offset):
    """Stores `data` at any `offset` through a MAP_SHARED mapping; no msync (coherency is
    the point), the mapping is just unmapped."""
    start = offset - offset % PAGE
    length = offset + len(data) - start
    fd = os.open(path, os.O_RDWR)
    try:
        with mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                       offset=start) as mm:
            mm[offset - start:offset - start + len(data)] = data
    finally:
        os.close(fd)


def drop_file_cache(path):
    """Drops the kernel page cache of one file (clean pages), so the next read
    comes from the daemon even in cached mode."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def blocks(path):
    """st_blocks of `path` (512-byte units)."""
    return os.stat(path).st_blocks


def data_ranges(path):
    """[(start, end)] byte ranges the file reports as written (SEEK_DATA/SEEK_HOLE, which
    ramdiskfs answers from its store)."""
    ranges = []
    fd = os.open(path, os.O_RDONLY)
    try:
        end = os.fstat(fd).st_size
        off = 0
        while off < end:
            try:
                start = os.lseek(fd, off, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:
                    break
                raise
            stop = os.lseek(fd, start, os.SEEK_HOLE)
            ranges.append((start, stop))
            off = stop
    finally:
        os.close(fd)
    return ranges


def overlap_bytes(a, b):
    """Bytes shared by two lists of (start, end) ranges."""
    return sum(max(0, min(e1, e2) - max(s1, s2)) for s1, e1 in a for s2, e2 in b)


def meminfo(key):
    """A /proc/meminfo figure in bytes (e.g. meminfo("MemTotal"))."""
    with open("/proc/meminfo") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name == key:
                return int(rest.split()[0]) * 1024
    raise KeyError(key)


def mem_total_bytes():
    return meminfo("MemTotal")
