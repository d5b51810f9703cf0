"""Read a TensorFlow checkpoint (the TensorBundle format) with NumPy alone, so converting one needs no TensorFlow.

A checkpoint ``PREFIX`` is two files. ``PREFIX.index`` is a LevelDB-style sorted string table (SSTable) whose
keys are tensor names and whose values are serialised ``BundleEntryProto`` messages (dtype, shape, which data
file, offset, size); the empty key holds the ``BundleHeaderProto``. ``PREFIX.data-00000-of-00001`` holds the
raw little-endian tensor bytes. Formats as written by TensorFlow's ``tensor_bundle.cc`` and LevelDB's
``table_format.md``; only what a single-shard checkpoint of plain dense tensors needs is read, and anything
else (compressed blocks, sliced or multi-shard tensors, string tensors) is refused by name.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48
# TensorFlow's DataType enum (types.proto) for the dtypes a model's weights use.
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64,
          10: np.bool_, 19: np.float16}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(message: bytes):
    """The protobuf wire fields of ``message``: ``(number, wire_type, value)``, value an int or bytes."""
    pos = 0
    while pos < len(message):
        key, pos = _varint(message, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(message, pos)
        elif wire == 1:
            value, pos = int.from_bytes(message[pos:pos + 8], "little"), pos + 8
        elif wire == 2:
            length, pos = _varint(message, pos)
            value, pos = message[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = int.from_bytes(message[pos:pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} in field {number}")
        yield number, wire, value


def _block(table: bytes, offset: int, size: int, where: Path) -> list[tuple[bytes, bytes]]:
    """The ``(key, value)`` entries of the SSTable block at ``offset``, keys restored from their shared prefixes."""
    if table[offset + size] != 0:
        raise ValueError(f"{where}: block at byte {offset} is compressed (type {table[offset + size]}); "
                         "only uncompressed checkpoints are read")
    block = table[offset:offset + size]
    restarts = struct.unpack_from("<I", block, size - 4)[0]
    end = size - 4 * (restarts + 1)
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_length, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        entries.append((key, block[pos:pos + value_length]))
        pos += value_length
    return entries


def _shape(message: bytes) -> tuple[int, ...]:
    dims = []
    for number, _, value in _fields(message):
        if number == 2:  # TensorShapeProto.dim
            dims.append(next((v for n, _, v in _fields(value) if n == 1), 0))
        elif number == 3 and value:
            raise ValueError("tensor of unknown rank")
    return tuple(dims)


def read_checkpoint(prefix: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of the checkpoint ``prefix`` (the path before ``.index``) by name, as NumPy arrays."""
    prefix = str(prefix)
    index_path, data_path = Path(prefix + ".index"), Path(prefix + ".data-00000-of-00001")
    for path in (index_path, data_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; {prefix!r} is not a single-shard TensorFlow checkpoint")
    table = index_path.read_bytes()
    if len(table) < FOOTER_BYTES or struct.unpack_from("<Q", table, len(table) - 8)[0] != TABLE_MAGIC:
        raise ValueError(f"{index_path}: not a TensorBundle index (no SSTable footer)")
    pos = len(table) - FOOTER_BYTES
    _, pos = _varint(table, pos)  # metaindex handle: unused by TensorBundle
    _, pos = _varint(table, pos)
    index_offset, pos = _varint(table, pos)
    index_size, pos = _varint(table, pos)
    data = data_path.read_bytes()
    tensors = {}
    for _, handle in _block(table, index_offset, index_size, index_path):
        block_offset, at = _varint(handle, 0)
        block_size, _ = _varint(handle, at)
        for key, value in _block(table, block_offset, block_size, index_path):
            if not key:  # the BundleHeaderProto
                continue
            entry = {number: value for number, _, value in _fields(value)}
            name = key.decode()
            if entry.get(3, 0) != 0 or 7 in entry:
                raise ValueError(f"{index_path}: tensor {name!r} is sharded or sliced; not supported")
            dtype = DTYPES.get(entry.get(1, 0))
            if dtype is None:
                raise ValueError(f"{index_path}: tensor {name!r} has TensorFlow dtype {entry.get(1)}, not read here")
            shape = _shape(entry.get(2, b""))
            offset, size = entry.get(4, 0), entry.get(5, 0)
            array = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"), count=size // np.dtype(dtype).itemsize,
                                  offset=offset)
            tensors[name] = array.reshape(shape).copy()
    return tensors
