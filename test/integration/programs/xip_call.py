"""Maps a disk PROT_READ|PROT_EXEC (MAP_SHARED), then writes x86-64 functions
`mov eax, IMM32; ret` into it with pwrite()/write() at the given (non-page-aligned)
offsets, checks the bytes through the mapping and calls each function.

  python3 xip_call.py DISK OFFSET:VALUE:pwrite|write ...

Prints one JSON object: {"OFFSET": {"seen": hex, "page_start": hex, "ret": int|null,
"fresh_ret": int|null}}. A function whose bytes are wrong in the mapping is not called
(so a failure is reported, not a crash). Runs in its own process on purpose.
"""

import ctypes
import json
import mmap
import os
import struct
import sys

PAGE = mmap.PAGESIZE
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
MAP_FAILED = ctypes.c_void_p(-1).value


def code_for(value):
    return b"\xb8" + struct.pack("<i", value) + b"\xc3"  # mov eax, imm32; ret


def map_exec(fd, length):
    addr = libc.mmap(None, length, mmap.PROT_READ | mmap.PROT_EXEC, mmap.MAP_SHARED, fd, 0)
    if addr in (None, MAP_FAILED):
        err = ctypes.get_errno()
        raise OSError(err, f"mmap(PROT_READ|PROT_EXEC, MAP_SHARED): {os.strerror(err)}")
    return addr


def call(addr, offset, code):
    seen = ctypes.string_at(addr + offset, len(code))
    if seen != code:
        return seen, None
    fn = ctypes.CFUNCTYPE(ctypes.c_int)(addr + offset)
    return seen, fn()


def main():
    path, specs = sys.argv[1], sys.argv[2:]
    todo = []
    for spec in specs:
        off, value, how = spec.split(":")
        todo.append((int(off), int(value), how))
    length = max(off for off, _, _ in todo) // PAGE * PAGE + 2 * PAGE
    fd = os.open(path, os.O_RDWR)
    addr = map_exec(fd, length)  # mapped before the writes
    out = {}
    for off, value, how in todo:
        code = code_for(value)
        if how == "pwrite":
            n = os.pwrite(fd, code, off)
        else:
            os.lseek(fd, off, os.SEEK_SET)
            n = os.write(fd, code)
        assert n == len(code), f"{how} at {off} returned {n}"
        seen, ret = call(addr, off, code)
        page_start = ctypes.string_at(addr + off // PAGE * PAGE, len(code))
        out[str(off)] = {"seen": seen.hex(), "page_start": page_start.hex(), "ret": ret}
    libc.munmap(addr, length)
    addr = map_exec(fd, length)  # and a mapping made after them
    for off, value, how in todo:
        out[str(off)]["fresh_ret"] = call(addr, off, code_for(value))[1]
    libc.munmap(addr, length)
    os.close(fd)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
