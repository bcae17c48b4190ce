"""Read the files inside a Qt resource archive (.rcc), as GCompris ships its photos.

The format (qtbase src/tools/rcc/rcc.cpp): a "qres" header with the offsets of a tree of nodes, a table of
names (UTF-16 BE) and a data area; a file's data is its length followed by its bytes, zlib-compressed behind a
4-byte length (qCompress) when its flag says so. No Qt needed.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

_DIRECTORY, _COMPRESSED, _ZSTD = 0x02, 0x01, 0x04


class ResourceError(ValueError):
    """Not a Qt resource archive this reader understands."""


def read_resources(data: bytes) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) of every file in the archive, depth first."""
    if data[:4] != b"qres":
        raise ResourceError("not a Qt resource archive (no 'qres' magic)")
    version, tree, payload, names = struct.unpack(">IIII", data[4:20])
    node_size = 22 if version >= 2 else 14  # version 2 added an 8-byte modification time to each node

    def name_at(offset: int) -> str:
        (length,) = struct.unpack(">H", data[names + offset:names + offset + 2])
        start = names + offset + 6  # length (2), hash (4), then the characters
        return data[start:start + 2 * length].decode("utf-16-be")

    def walk(index: int, prefix: str) -> Iterator[tuple[str, bytes]]:
        base = tree + index * node_size
        name_offset, flags = struct.unpack(">IH", data[base:base + 6])
        path = f"{prefix}/{name_at(name_offset)}" if index else ""
        if flags & _DIRECTORY:
            count, first = struct.unpack(">II", data[base + 6:base + 14])
            for child in range(first, first + count):
                yield from walk(child, path)
            return
        (data_offset,) = struct.unpack(">I", data[base + 10:base + 14])
        start = payload + data_offset
        (size,) = struct.unpack(">I", data[start:start + 4])
        blob = data[start + 4:start + 4 + size]
        if flags & _ZSTD:
            raise ResourceError(f"{path} is zstd-compressed, which this reader does not support")
        yield path, zlib.decompress(blob[4:]) if flags & _COMPRESSED else blob

    yield from walk(0, "")
