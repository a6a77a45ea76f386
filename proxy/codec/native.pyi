"""Type stub for the compiled native codec (built from native/codec.pyx).

Same functions and semantics as ``proxy.codec.pure``; see its docstrings.
"""

from collections.abc import Iterable
from typing import Final

from .base import CloseDecoder, LengthDecoder, RequestHead, ResponseHead  # LengthDecoder: native's own, same API

NAME: Final[str]

_Buffer = bytes | bytearray | memoryview
_Pairs = Iterable[tuple[bytes, bytes]]

def parse_request_head(
    buf: _Buffer, max_size: int, scan_from: int = 0
) -> tuple[RequestHead, int] | None: ...
def parse_response_head(
    buf: _Buffer, method: bytes, max_size: int, scan_from: int = 0, upgrade: bool = False
) -> tuple[ResponseHead, int] | None: ...

class ChunkedDecoder:
    def __init__(self, status: int = 400) -> None: ...
    def feed(self, data: _Buffer) -> tuple[bytes, bytes | None]: ...
    def eof(self) -> bool: ...

def make_decoder(
    framing: int, content_length: int, error_status: int = 400
) -> LengthDecoder | ChunkedDecoder | CloseDecoder | None: ...
def build_request_head(
    head: RequestHead, target: bytes, host: bytes, drop: frozenset[bytes], extra: _Pairs
) -> bytes: ...
def build_response_head(head: ResponseHead, drop: frozenset[bytes], extra: _Pairs) -> bytes: ...
