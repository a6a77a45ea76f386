# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Native codec: the functions of ``proxy.codec.pure``, in C.

Theory of operation
-------------------
``pure`` runs every head and chunked body through h11 and derives the
proxy's facts in Python. This module accepts and refuses exactly what that
combination accepts and refuses (same ParseError status and code, same
fields, same bytes out); ``tests/codec/test_differential.py`` holds it to
that. The grammar, as h11 0.16 enforces it:

* request line: ``token SP 1*VCHAR SP "HTTP/" DIGIT "." DIGIT``; status
  line: ``"HTTP/" DIGIT "." DIGIT SP 3DIGIT [SP reason]`` where the reason
  is any bytes but NUL, LF, VT, FF and CR;
* lines end with LF, one CR before it is dropped; a head ends at the first
  empty line (empty lines before a request line are skipped, and counted);
* header line: ``token ":" value`` where the value is any bytes but NUL,
  LF, VT, FF and CR; surrounding SP/HTAB are not part of it. A line that
  starts with SP/HTAB continues the previous one (obs-fold): h11 joins it
  with one SP, so this module does too;
* Content-Length: a comma list of one repeated value, 1 to 20 digits,
  equal across headers; Transfer-Encoding: once, exactly "chunked" in any
  case (otherwise 501). h11 stores the normalised values (one
  Content-Length, lowercase "chunked"), so when a head needs that
  normalisation (or had obs-fold) ``raw`` is rebuilt from the normalised
  pairs instead of being the received block: ``raw`` always splits
  (``base.split_header_block``) to the pairs pure returns.

Parsing is one pass in C over the caller's buffer: each header line is
validated, matched case-insensitively against the few names the proxy
derives facts from, and left in place; the head object gets a handful of
bytes objects (method, target, the few values it needs, and ``raw``, the
header block) and ``headers`` is split from ``raw`` only if someone asks.
Head objects are allocated once and their slots filled directly.

Chunked bodies: a resumable state machine (size line, data, CRLF, trailer
section) with h11's limits: 1 to 20 hex digits, ``;`` extensions of any
bytes but LF, SP/HTAB allowed before the CRLF only without an extension,
CRLF after the data, trailers validated like header lines and dropped, and
a size line or trailer section still incomplete after a feed and longer
than 16384 bytes refused (h11 applies its incomplete-event limit only when
it runs out of data, so this is checked at the end of each feed as well).
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.long cimport PyLong_FromLong, PyLong_FromUnsignedLongLong
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from libc.stdint cimport UINT64_MAX, uint64_t
from libc.string cimport memchr, memcmp, memcpy, memset

from proxy.codec import base as _base
from proxy.codec.base import LengthDecoder as _PyLengthDecoder
from proxy.codec.base import (
    FRAMING_CHUNKED,
    FRAMING_CLOSE,
    FRAMING_LENGTH,
    FRAMING_NONE,
    HOP_BY_HOP,
    CloseDecoder,
    ParseError,
    RequestHead,
    ResponseHead,
)

NAME = "native"

cdef extern from *:
    """
    #include "structmember.h"

    /* A fresh instance of a __slots__ class, every slot empty (NULL). */
    static PyObject *edgeproxy_alloc(PyObject *cls) {
        PyTypeObject *t = (PyTypeObject *)cls;
        return t->tp_alloc(t, 0);
    }

    /* Offset of a writable object slot, or -1 when ``descr`` is not one. */
    static Py_ssize_t edgeproxy_slot_offset(PyObject *descr) {
        PyMemberDef *m;
        if (Py_TYPE(descr) != &PyMemberDescr_Type) return -1;
        m = ((PyMemberDescrObject *)descr)->d_member;
        if ((m->type != T_OBJECT_EX && m->type != T_OBJECT) || (m->flags & READONLY)) return -1;
        return m->offset;
    }

    /* Fill an empty slot of a fresh object (takes a new reference). */
    static inline void edgeproxy_slot_init(PyObject *o, Py_ssize_t off, PyObject *v) {
        Py_INCREF(v);
        *(PyObject **)((char *)o + off) = v;
    }

    /* Eight bytes at once: does the word hold a control byte (below 0x20,
       or DEL)? A header value may hold none but HTAB, which also trips this
       and is checked singly. The other helper: for request targets, a byte
       outside 0x21..0x7E? */
    static inline int edgeproxy_word_has_low(const unsigned char *p) {
        uint64_t x, y;
        memcpy(&x, p, 8);
        y = x ^ 0x7F7F7F7F7F7F7F7FULL;
        return ((((x - 0x2020202020202020ULL) & ~x) | ((y - 0x0101010101010101ULL) & ~y))
                & 0x8080808080808080ULL) != 0;
    }
    static inline int edgeproxy_word_not_vchar(const unsigned char *p) {
        uint64_t x;
        memcpy(&x, p, 8);
        return ((((x - 0x2121212121212121ULL) & ~x) | ((x + 0x0101010101010101ULL) | x))
                & 0x8080808080808080ULL) != 0;
    }

    /* Borrowed slot value, NULL when unset. */
    static inline PyObject *edgeproxy_slot_get(PyObject *o, Py_ssize_t off) {
        return *(PyObject **)((char *)o + off);
    }
    """
    object edgeproxy_alloc(object cls)
    Py_ssize_t edgeproxy_slot_offset(object descr)
    void edgeproxy_slot_init(object o, Py_ssize_t off, object v)
    PyObject *edgeproxy_slot_get(object o, Py_ssize_t off)
    bint edgeproxy_word_has_low(const unsigned char *p) noexcept nogil
    bint edgeproxy_word_not_vchar(const unsigned char *p) noexcept nogil


ctypedef const unsigned char *cbytes

cdef enum:
    HT = 9
    LF = 10
    CR = 13
    SP = 32
    COMMA = 44
    COLON = 58
    SEMI = 59

    # obs-fold (a header line starting with SP/HTAB): 1 joins it as h11
    # would; 0 refuses it like any illegal header line (RFC 9112 section
    # 5.2 lets a server reject it with 400; both codecs do)
    ACCEPT_OBS_FOLD = 0

    SPAN_CAP = 8          # Connection / X-Forwarded-For values kept in place
    MAX_CHUNK_LINE = 16384  # h11's incomplete-event limit (chunk size line, trailers)

    K_REQUEST = 0
    K_RESPONSE = 1
    K_TRAILER = 2

    CONN_KEEP_ALIVE = 1
    CONN_CLOSE = 2
    CONN_UPGRADE = 4
    CONN_TE = 8


# --------------------------------------------------------------------------
# character classes

cdef unsigned char TCHAR[256]   # token
cdef unsigned char VCHAR[256]   # request-target (visible ASCII)
cdef unsigned char FVAL[256]    # header value / reason phrase byte
cdef unsigned char LOWER[256]
cdef signed char HEXV[256]


cdef void _init_tables() noexcept:
    cdef int c
    cdef bytes extra = b"!#$%&'*+-.^_`|~"
    for c in range(256):
        LOWER[c] = c + 32 if 65 <= c <= 90 else c
        VCHAR[c] = 0x21 <= c <= 0x7E
        # RFC 9110 section 5.5: visible characters, obs-text, SP and HTAB;
        # every other control (NUL, CR, LF, the rest of 0x01-0x1F, DEL) is
        # refused (stricter than h11, which lets 0x01-0x08 and such through)
        FVAL[c] = c == HT or (c >= 0x20 and c != 0x7F)
        TCHAR[c] = (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122)
        if 48 <= c <= 57:
            HEXV[c] = c - 48
        elif 65 <= c <= 70:
            HEXV[c] = c - 55
        elif 97 <= c <= 102:
            HEXV[c] = c - 87
        else:
            HEXV[c] = -1
    for c in extra:
        TCHAR[c] = 1


_init_tables()


cdef inline bint _ieq(cbytes a, const char *lit, Py_ssize_t n) noexcept nogil:
    """``a[:n]``, ASCII-lowercased, equals the lowercase literal."""
    cdef Py_ssize_t i
    for i in range(n):
        if LOWER[a[i]] != <unsigned char>lit[i]:
            return False
    return True


cdef inline bint _ows(unsigned char c) noexcept nogil:
    return c == SP or c == HT


cdef inline Py_ssize_t _value_end(cbytes p, Py_ssize_t i, Py_ssize_t e) noexcept nogil:
    """Index of the first byte of ``p[i:e]`` a header value may not hold, or ``e``."""
    cdef Py_ssize_t k
    while i + 8 <= e:
        if edgeproxy_word_has_low(p + i):
            for k in range(8):
                if not FVAL[p[i + k]]:
                    return i + k
        i += 8
    while i < e and FVAL[p[i]]:
        i += 1
    return i


cdef inline Py_ssize_t _vchar_end(cbytes p, Py_ssize_t i, Py_ssize_t e) noexcept nogil:
    """Index of the first byte of ``p[i:e]`` outside 0x21..0x7E, or ``e``."""
    while i + 8 <= e and not edgeproxy_word_not_vchar(p + i):
        i += 8
    while i < e and VCHAR[p[i]]:
        i += 1
    return i


# --------------------------------------------------------------------------
# module constants

cdef bytes EMPTY = b""
cdef bytes V11 = b"1.1"
cdef bytes V10 = b"1.0"
cdef bytes OK = b"OK"
cdef object F_NONE = FRAMING_NONE
cdef object F_LENGTH = FRAMING_LENGTH
cdef object F_CHUNKED = FRAMING_CHUNKED
cdef object F_CLOSE = FRAMING_CLOSE
cdef object MINUS_ONE = -1
cdef object EMPTY_SET = frozenset()
cdef tuple METHODS = (b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE")


def _conn_sets():
    names = ((CONN_KEEP_ALIVE, b"keep-alive"), (CONN_CLOSE, b"close"), (CONN_UPGRADE, b"upgrade"), (CONN_TE, b"te"))
    return tuple(frozenset(n for bit, n in names if mask & bit) for mask in range(16))


cdef tuple CONN_SETS = _conn_sets()

cdef object _split_header_block = _base.split_header_block


cdef inline bytes _bytes(cbytes p, Py_ssize_t n):
    return PyBytes_FromStringAndSize(<const char *>p, n)


cdef bytes _method(cbytes p, Py_ssize_t n):
    """The method as bytes; common ones are shared constants."""
    cdef bytes m
    for m in METHODS:
        if PyBytes_GET_SIZE(m) == n and memcmp(PyBytes_AS_STRING(m), p, n) == 0:
            return m
    return _bytes(p, n)


# --------------------------------------------------------------------------
# head objects: allocated once, slots filled directly

REQUEST_SLOTS = ("method", "target", "version", "host", "framing", "content_length", "keep_alive",
                 "connection", "upgrade", "expect_continue", "xff", "request_id", "traceparent", "raw",
                 "_headers")
RESPONSE_SLOTS = ("status", "reason", "version", "framing", "content_length", "keep_alive", "connection",
                  "upgrade", "raw", "_headers")

cdef Py_ssize_t RQ[15]
cdef Py_ssize_t RS[10]
cdef bint RQ_DIRECT = False
cdef bint RS_DIRECT = False


cdef bint _offsets(cls, tuple names, Py_ssize_t *out) except -1:
    """Slot offsets of ``cls`` for ``names``; False if the class differs.

    The head classes are slotted Python classes (their fields are member
    descriptors that give the offsets) or, with the core compiled, extension
    types whose fields are properties over one object slot each, in
    ``names`` order. Either way the offsets are verified on a probe object
    (each field set through its attribute must be read back at its offset),
    so a layout this code does not expect falls back to normal construction.
    """
    cdef Py_ssize_t i, off, n = len(names)
    if type(cls) is not type or cls.__dictoffset__ or cls.__weakrefoffset__:
        return False
    # exactly one object slot per name and nothing else (no vtable, nothing else to set)
    if cls.__basicsize__ != object.__basicsize__ + <Py_ssize_t>sizeof(PyObject *) * n:
        return False
    if cls.__flags__ & (1 << 9):  # Py_TPFLAGS_HEAPTYPE: a Python class
        if cls.__new__ is not object.__new__:
            return False  # its own __new__: allocate it the normal way
        for i in range(n):
            off = edgeproxy_slot_offset(cls.__dict__.get(names[i]))
            if off <= 0:
                return False
            out[i] = off
    else:
        for i in range(n):
            out[i] = object.__basicsize__ + <Py_ssize_t>sizeof(PyObject *) * i
    probe = cls.__new__(cls)
    marks = [object() for _ in range(n)]
    for i in range(n):
        setattr(probe, names[i], marks[i])
    for i in range(n):
        if edgeproxy_slot_get(probe, out[i]) != <PyObject *>marks[i]:
            return False
    return True


RQ_DIRECT = _offsets(RequestHead, REQUEST_SLOTS, RQ)
RS_DIRECT = _offsets(ResponseHead, RESPONSE_SLOTS, RS)


cdef object _new_request(bytes method, bytes target, bytes version, bytes host, object framing,
                         object content_length, bint keep_alive, object connection, bytes upgrade,
                         bint expect_continue, bytes xff, bytes request_id, bytes traceparent, bytes raw):
    cdef object h
    if RQ_DIRECT:
        h = edgeproxy_alloc(RequestHead)
        edgeproxy_slot_init(h, RQ[0], method)
        edgeproxy_slot_init(h, RQ[1], target)
        edgeproxy_slot_init(h, RQ[2], version)
        edgeproxy_slot_init(h, RQ[3], host)
        edgeproxy_slot_init(h, RQ[4], framing)
        edgeproxy_slot_init(h, RQ[5], content_length)
        edgeproxy_slot_init(h, RQ[6], True if keep_alive else False)
        edgeproxy_slot_init(h, RQ[7], connection)
        edgeproxy_slot_init(h, RQ[8], upgrade)
        edgeproxy_slot_init(h, RQ[9], True if expect_continue else False)
        edgeproxy_slot_init(h, RQ[10], xff)
        edgeproxy_slot_init(h, RQ[11], request_id)
        edgeproxy_slot_init(h, RQ[12], traceparent)
        edgeproxy_slot_init(h, RQ[13], raw)
        edgeproxy_slot_init(h, RQ[14], None)
        return h
    h = RequestHead(method, target, version)
    h.host = host
    h.framing = framing
    h.content_length = content_length
    h.keep_alive = keep_alive
    h.connection = connection
    h.upgrade = upgrade
    h.expect_continue = expect_continue
    h.xff = xff
    h.request_id = request_id
    h.traceparent = traceparent
    h.raw = raw
    return h


cdef object _new_response(object status, bytes reason, bytes version, object framing, object content_length,
                          bint keep_alive, object connection, bytes upgrade, bytes raw):
    cdef object h
    if RS_DIRECT:
        h = edgeproxy_alloc(ResponseHead)
        edgeproxy_slot_init(h, RS[0], status)
        edgeproxy_slot_init(h, RS[1], reason)
        edgeproxy_slot_init(h, RS[2], version)
        edgeproxy_slot_init(h, RS[3], framing)
        edgeproxy_slot_init(h, RS[4], content_length)
        edgeproxy_slot_init(h, RS[5], True if keep_alive else False)
        edgeproxy_slot_init(h, RS[6], connection)
        edgeproxy_slot_init(h, RS[7], upgrade)
        edgeproxy_slot_init(h, RS[8], raw)
        edgeproxy_slot_init(h, RS[9], None)
        return h
    h = ResponseHead(status, reason, version)
    h.framing = framing
    h.content_length = content_length
    h.keep_alive = keep_alive
    h.connection = connection
    h.upgrade = upgrade
    h.raw = raw
    return h


cdef inline object _get(object obj, Py_ssize_t off, bint direct, str name):
    """``getattr(obj, name)``, read straight from the slot when possible."""
    cdef PyObject *v
    if direct:
        v = edgeproxy_slot_get(obj, off)
        if v != NULL:
            return <object>v
    return getattr(obj, name)


# --------------------------------------------------------------------------
# header block scanning

ctypedef struct Span:
    cbytes p
    Py_ssize_t n

ctypedef struct Facts:
    int kind
    int err               # first Content-Length / Transfer-Encoding refusal (h11's status hint)
    int need_norm         # h11 stores a normalised value or drops a duplicate
    int host_count
    Span host
    int cl_seen
    Span cl               # the normalised Content-Length digits
    int te_seen
    unsigned int conn_mask
    int conn_other        # a Connection token outside CONN_SETS
    int conn_n
    Span conn[SPAN_CAP]
    Span upgrade
    int expect
    int xff_n
    Span xff[SPAN_CAP]
    Span rid
    Span tp


cdef inline void _fail(Facts *f, int status) noexcept nogil:
    if f.err == 0:
        f.err = status


cdef void _content_length(Facts *f, cbytes v, Py_ssize_t vn) noexcept nogil:
    # h11: {item.strip() for item in value.split(b",")} must hold one value,
    # 1 to 20 digits, the same in every Content-Length header
    cdef Py_ssize_t i = 0, s, e, an = -1
    cdef cbytes a = NULL
    cdef bint comma = False
    while True:
        s = i
        while i < vn and v[i] != COMMA:
            i += 1
        e = i
        while s < e and _ows(v[s]):
            s += 1
        while e > s and _ows(v[e - 1]):
            e -= 1
        if an < 0:
            a = v + s
            an = e - s
        elif e - s != an or memcmp(v + s, a, an) != 0:
            _fail(f, 400)
            return
        if i >= vn:
            break
        comma = True
        i += 1
    if an == 0 or an > 20:
        _fail(f, 400)
        return
    for i in range(an):
        if not (48 <= a[i] <= 57):
            _fail(f, 400)
            return
    if f.cl_seen:
        if an != f.cl.n or memcmp(a, f.cl.p, an) != 0:
            _fail(f, 400)
        else:
            f.need_norm = 1  # h11 keeps only the first
        return
    f.cl_seen = 1
    f.cl.p = a
    f.cl.n = an
    if comma:
        f.need_norm = 1


cdef void _transfer_encoding(Facts *f, cbytes v, Py_ssize_t vn) noexcept nogil:
    if f.te_seen:
        _fail(f, 501)
        return
    if vn != 7 or not _ieq(v, "chunked", 7):
        _fail(f, 501)
        return
    f.te_seen = 1
    if memcmp(v, b"chunked", 7) != 0:
        f.need_norm = 1  # h11 stores it lowercased


cdef void _connection(Facts *f, cbytes v, Py_ssize_t vn) noexcept nogil:
    cdef Py_ssize_t i = 0, s, e, k
    if f.conn_n < SPAN_CAP:
        f.conn[f.conn_n].p = v
        f.conn[f.conn_n].n = vn
    f.conn_n += 1
    while i <= vn:
        s = i
        while i < vn and v[i] != COMMA:
            i += 1
        e = i
        i += 1
        while s < e and _ows(v[s]):
            s += 1
        while e > s and _ows(v[e - 1]):
            e -= 1
        k = e - s
        if k == 0:
            continue
        if k == 10 and _ieq(v + s, "keep-alive", 10):
            f.conn_mask |= CONN_KEEP_ALIVE
        elif k == 5 and _ieq(v + s, "close", 5):
            f.conn_mask |= CONN_CLOSE
        elif k == 7 and _ieq(v + s, "upgrade", 7):
            f.conn_mask |= CONN_UPGRADE
        elif k == 2 and _ieq(v + s, "te", 2):
            f.conn_mask |= CONN_TE
        else:
            f.conn_other = 1


cdef void _fact(Facts *f, cbytes name, Py_ssize_t nn, cbytes v, Py_ssize_t vn) noexcept nogil:
    """Record what the proxy derives from one (validated) header."""
    cdef unsigned char c0 = LOWER[name[0]]
    if c0 == 99:  # c
        if nn == 14 and _ieq(name, "content-length", 14):
            _content_length(f, v, vn)
        elif nn == 10 and f.kind != K_TRAILER and _ieq(name, "connection", 10):
            _connection(f, v, vn)
    elif c0 == 116:  # t
        if nn == 17 and _ieq(name, "transfer-encoding", 17):
            _transfer_encoding(f, v, vn)
        elif nn == 11 and f.kind == K_REQUEST and _ieq(name, "traceparent", 11):
            f.tp.p = v
            f.tp.n = vn
    elif f.kind == K_TRAILER:
        return
    elif c0 == 117:  # u
        if nn == 7 and _ieq(name, "upgrade", 7):
            f.upgrade.p = v
            f.upgrade.n = vn
    elif f.kind != K_REQUEST:
        return
    elif c0 == 104:  # h
        if nn == 4 and _ieq(name, "host", 4):
            f.host_count += 1
            f.host.p = v
            f.host.n = vn
    elif c0 == 101:  # e
        if nn == 6 and _ieq(name, "expect", 6):
            # 1: 100-continue; 2 (sticky): any other expectation, refused 417
            if vn == 12 and _ieq(v, "100-continue", 12):
                if f.expect == 0:
                    f.expect = 1
            elif vn > 0:
                f.expect = 2
    elif c0 == 120:  # x
        if nn == 15 and _ieq(name, "x-forwarded-for", 15):
            if f.xff_n < SPAN_CAP:
                f.xff[f.xff_n].p = v
                f.xff[f.xff_n].n = vn
            f.xff_n += 1
        elif nn == 12 and _ieq(name, "x-request-id", 12):
            if f.rid.n == 0:
                f.rid.p = v
                f.rid.n = vn


cdef Py_ssize_t _scan_headers(cbytes p, Py_ssize_t pos, Py_ssize_t end, Facts *f,
                              Py_ssize_t *blank) noexcept nogil:
    """Validate the header lines from ``pos`` to the first empty line.

    Returns the index past that empty line (``blank`` gets its start), -1
    for a line h11 refuses, -2 for an obs-fold continuation line (the caller
    unfolds and scans again).
    """
    cdef cbytes nl
    cdef Py_ssize_t le, e, i, vs, ve, nend
    cdef bint first = True
    cdef unsigned char c
    while True:
        nl = <cbytes>memchr(p + pos, LF, end - pos)
        if nl == NULL:
            return -1
        le = nl - p
        e = le
        if e > pos and p[e - 1] == CR:
            e -= 1
        if e == pos:
            blank[0] = pos
            return le + 1
        c = p[pos]
        if c == SP or c == HT:
            return -2 if ACCEPT_OBS_FOLD and not first else -1
        i = pos
        while i < e and TCHAR[p[i]]:
            i += 1
        if i == pos or i == e or p[i] != COLON:
            return -1
        nend = i
        i += 1
        if _value_end(p, i, e) != e:
            return -1
        vs = i
        ve = e
        while vs < ve and _ows(p[vs]):
            vs += 1
        while ve > vs and _ows(p[ve - 1]):
            ve -= 1
        _fact(f, p + pos, nend - pos, p + vs, ve - vs)
        first = False
        pos = le + 1


cdef Py_ssize_t _head_end(cbytes p, Py_ssize_t n, Py_ssize_t i) noexcept nogil:
    """``base.head_end``: index past the first LF LF / LF CR LF from ``i``."""
    cdef cbytes q
    while i < n:
        q = <cbytes>memchr(p + i, LF, n - i)
        if q == NULL:
            return -1
        i = q - p
        if i + 1 < n:
            if p[i + 1] == LF:
                return i + 2
            if p[i + 1] == CR and i + 2 < n and p[i + 2] == LF:
                return i + 3
        i += 1
    return -1


cdef bint _bad_tail(cbytes p, Py_ssize_t start, Py_ssize_t end, Py_ssize_t scan_from) noexcept nogil:
    """A resumed scan (``scan_from``) that found the end of a head which really
    ended earlier (the caller's promise broken): whether the bytes from that
    first end on hold what a head block may not (a control byte, LF then
    SP/HT), as the pure codec checks over the whole block up to ``end``."""
    cdef Py_ssize_t first, i
    cdef unsigned char c
    if scan_from - 3 <= start:
        return False
    first = _head_end(p, end, start)
    if first < 0 or first >= end:
        return False
    for i in range(first - 1, end):
        c = p[i]
        if (c < 32 and c != 9 and c != 10 and c != 13) or c == 127:
            return True
        if c == LF and i + 1 < end and (p[i + 1] == SP or p[i + 1] == HT):
            return True
    return False


cdef bytes _unfold(cbytes p, Py_ssize_t pos, Py_ssize_t end):
    """The header block up to its empty line with obs-fold lines joined as
    h11 joins them (previous line + SP + the line without its leading
    SP/HTAB), every line ending CRLF, then the empty line."""
    cdef list out = []
    cdef bytes line
    cdef bytearray last
    for line in _bytes(p + pos, end - pos).split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:len(line) - 1]
        if not line:
            break
        if line[0] == SP or line[0] == HT:
            last = out[len(out) - 1]  # never the first line: refused before
            last += b" "
            last += line.lstrip(b" \t")
        else:
            out.append(bytearray(line))
    return b"\r\n".join(out) + b"\r\n\r\n"


cdef bytes _normalized(bytes raw):
    """``raw`` rebuilt with h11's normalised Content-Length/Transfer-Encoding."""
    cdef list out = []
    cdef bint seen_cl = False
    for name, value in _split_header_block(raw):
        low = name.lower()
        if low == b"content-length":
            if seen_cl:
                continue
            seen_cl = True
            value = value.split(b",", 1)[0].strip()
        elif low == b"transfer-encoding":
            value = value.lower()
        out.append(b"%b: %b\r\n" % (name, value))
    return b"".join(out)


cdef bytes _scan_block(cbytes p, Py_ssize_t pos, Py_ssize_t end, Facts *f, int kind, Py_ssize_t *blank,
                       bint *ok):
    """Scan a header block (``ok`` says whether h11 accepts it).

    Returns None, or the unfolded block when obs-fold had to be joined: then
    the spans in ``f`` and ``blank`` refer to that bytes object.
    """
    cdef Py_ssize_t r
    cdef bytes unfolded = None
    memset(f, 0, sizeof(Facts))
    f.kind = kind
    r = _scan_headers(p, pos, end, f, blank)
    if r == -2:
        unfolded = _unfold(p, pos, end)
        memset(f, 0, sizeof(Facts))
        f.kind = kind
        r = _scan_headers(<cbytes>PyBytes_AS_STRING(unfolded), 0, PyBytes_GET_SIZE(unfolded), f, blank)
    ok[0] = r >= 0
    return unfolded


cdef object _content_length_value(Facts *f):
    cdef uint64_t v = 0
    cdef Py_ssize_t i
    if not f.cl_seen:
        return MINUS_ONE
    if f.cl.n <= 19:  # fits in 64 bits
        for i in range(f.cl.n):
            v = v * 10 + (f.cl.p[i] - 48)
        return PyLong_FromUnsignedLongLong(v)
    return int(_bytes(f.cl.p, f.cl.n))


cdef object _connection_tokens(Facts *f, bytes raw):
    cdef set toks
    cdef Py_ssize_t k, i, s, e, vn, j
    cdef cbytes v
    cdef bytes t
    cdef char *w
    if not f.conn_other:
        return CONN_SETS[f.conn_mask]
    toks = set()
    if f.conn_n > SPAN_CAP:
        for name, value in _split_header_block(raw):
            if name.lower() == b"connection":
                for t in value.split(b","):
                    t = t.strip()
                    if t:
                        toks.add(t.lower())
        return frozenset(toks)
    for k in range(f.conn_n):
        v = f.conn[k].p
        vn = f.conn[k].n
        i = 0
        while i <= vn:
            s = i
            while i < vn and v[i] != COMMA:
                i += 1
            e = i
            i += 1
            while s < e and _ows(v[s]):
                s += 1
            while e > s and _ows(v[e - 1]):
                e -= 1
            if e > s:
                t = PyBytes_FromStringAndSize(NULL, e - s)
                w = PyBytes_AS_STRING(t)
                for j in range(e - s):
                    w[j] = LOWER[v[s + j]]
                toks.add(t)
    return frozenset(toks)


cdef bytes _forwarded_for(Facts *f, bytes raw):
    cdef Py_ssize_t k, total
    cdef bytes out
    cdef char *w
    if f.xff_n == 0:
        return EMPTY
    if f.xff_n == 1:
        return _bytes(f.xff[0].p, f.xff[0].n)
    if f.xff_n > SPAN_CAP:
        return b", ".join([v for n, v in _split_header_block(raw) if n.lower() == b"x-forwarded-for"])
    total = 2 * (f.xff_n - 1)
    for k in range(f.xff_n):
        total += f.xff[k].n
    out = PyBytes_FromStringAndSize(NULL, total)
    w = PyBytes_AS_STRING(out)
    for k in range(f.xff_n):
        if k:
            w[0] = 44  # ", "
            w[1] = 32
            w += 2
        memcpy(w, f.xff[k].p, f.xff[k].n)
        w += f.xff[k].n
    return out


# --------------------------------------------------------------------------
# parse_request_head


def parse_request_head(buf, Py_ssize_t max_size, Py_ssize_t scan_from=0):
    """Parse one request head from the start of ``buf`` (see pure)."""
    cdef Py_buffer view
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        return _request(<cbytes>view.buf, view.len, max_size, scan_from)
    finally:
        PyBuffer_Release(&view)


cdef object _request(cbytes p, Py_ssize_t n, Py_ssize_t max_size, Py_ssize_t scan_from):
    cdef Py_ssize_t start = 0, end, le, e, i, ms, ts, te, hs, blank = 0
    cdef bint v11, v10, keep_alive, ok = False
    cdef Facts f
    cdef bytes unfolded = None, raw
    # empty lines before the request line are skipped but count toward the limit
    while start < n:
        if p[start] == LF:
            start += 1
        elif p[start] == CR and start + 1 < n and p[start + 1] == LF:
            start += 2
        else:
            break
    end = _head_end(p, n, start if start > scan_from - 3 else scan_from - 3)
    if end < 0:
        if n > max_size:
            raise ParseError(431, "header_too_large", "request head exceeds the size limit")
        return None
    if end > max_size:
        raise ParseError(431, "header_too_large", "request head exceeds the size limit")
    if _bad_tail(p, start, end, scan_from):
        raise ParseError(400, "bad_request", "control character or obs-fold in the request head")

    # request line: token SP 1*VCHAR SP "HTTP/" DIGIT "." DIGIT
    le = <cbytes>memchr(p + start, LF, end - start) - p
    e = le
    if e > start and p[e - 1] == CR:
        e -= 1
    i = start
    while i < e and TCHAR[p[i]]:
        i += 1
    ms = i
    if ms == start or i >= e or p[i] != SP:
        raise ParseError(400, "bad_request", "illegal request line")
    i += 1
    ts = i
    i = _vchar_end(p, i, e)
    te = i
    if te == ts or i >= e or p[i] != SP:
        raise ParseError(400, "bad_request", "illegal request line")
    i += 1
    if (e - i != 8 or memcmp(p + i, b"HTTP/", 5) != 0 or not (48 <= p[i + 5] <= 57) or p[i + 6] != 46
            or not (48 <= p[i + 7] <= 57)):
        raise ParseError(400, "bad_request", "illegal request line")
    v11 = p[i + 5] == 49 and p[i + 7] == 49
    v10 = p[i + 5] == 49 and p[i + 7] == 48

    # header lines
    hs = le + 1
    unfolded = _scan_block(p, hs, end, &f, K_REQUEST, &blank, &ok)
    if not ok:
        raise ParseError(400, "bad_request", "illegal header line")
    if f.err:
        if f.err == 400:
            raise ParseError(400, "bad_request", "bad Content-Length")
        raise ParseError(f.err, "unsupported", "only Transfer-Encoding: chunked is supported")
    if f.host_count == 0 and v11:
        raise ParseError(400, "bad_request", "missing mandatory Host header")
    if f.host_count > 1:
        raise ParseError(400, "bad_request", "more than one Host header")
    if not (v11 or v10):
        raise ParseError(505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1")
    if f.te_seen and f.cl_seen:
        raise ParseError(400, "ambiguous_framing", "both Content-Length and Transfer-Encoding")
    if f.expect == 2:
        raise ParseError(417, "expectation_failed", "only Expect: 100-continue is supported")

    if unfolded is None:
        raw = _bytes(p + hs, blank - hs)
    else:
        raw = unfolded[:blank]
    if f.need_norm:
        raw = _normalized(raw)
    content_length = _content_length_value(&f)
    if f.te_seen:
        framing = F_CHUNKED
    elif f.cl_seen and content_length > 0:
        framing = F_LENGTH
    else:
        framing = F_NONE
    if v11:
        keep_alive = not (f.conn_mask & CONN_CLOSE)
    else:
        keep_alive = (f.conn_mask & CONN_KEEP_ALIVE) and not (f.conn_mask & CONN_CLOSE) and not f.te_seen
    head = _new_request(
        _method(p + start, ms - start),
        _bytes(p + ts, te - ts),
        V11 if v11 else V10,
        _bytes(f.host.p, f.host.n),
        framing,
        content_length,
        keep_alive,
        _connection_tokens(&f, raw),
        _bytes(f.upgrade.p, f.upgrade.n),
        f.expect == 1,
        _forwarded_for(&f, raw),
        _bytes(f.rid.p, f.rid.n),
        _bytes(f.tp.p, f.tp.n),
        raw,
    )
    return head, end


# --------------------------------------------------------------------------
# parse_response_head


def parse_response_head(buf, method, Py_ssize_t max_size, Py_ssize_t scan_from=0, upgrade=False):
    """Parse one response (or 1xx) head; ``method`` is the request's (see pure)."""
    cdef Py_buffer view
    cdef bint is_head
    if type(method) is bytes:
        is_head = PyBytes_GET_SIZE(method) == 4 and memcmp(PyBytes_AS_STRING(method), b"HEAD", 4) == 0
    else:
        is_head = method == b"HEAD"
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        return _response(<cbytes>view.buf, view.len, is_head, max_size, scan_from, bool(upgrade))
    finally:
        PyBuffer_Release(&view)


cdef object _response(cbytes p, Py_ssize_t n, bint is_head, Py_ssize_t max_size, Py_ssize_t scan_from,
                      bint upgrade):
    cdef Py_ssize_t end, le, e, hs, blank = 0
    cdef long status
    cdef bint v11, v10, keep_alive, ok = False
    cdef Facts f
    cdef bytes unfolded = None, raw, reason
    end = _head_end(p, n, scan_from - 3 if scan_from > 3 else 0)
    if end < 0:
        if n > max_size:
            raise ParseError(502, "invalid_response", "response head exceeds the size limit")
        return None
    if end > max_size:
        raise ParseError(502, "invalid_response", "response head exceeds the size limit")
    if _bad_tail(p, 0, end, scan_from):
        raise ParseError(502, "invalid_response", "control character or obs-fold in the response head")

    # status line: "HTTP/" DIGIT "." DIGIT SP 3DIGIT [SP reason]
    le = <cbytes>memchr(p, LF, end) - p
    e = le
    if e > 0 and p[e - 1] == CR:
        e -= 1
    if (e < 12 or memcmp(p, b"HTTP/", 5) != 0 or not (48 <= p[5] <= 57) or p[6] != 46
            or not (48 <= p[7] <= 57) or p[8] != SP or not (48 <= p[9] <= 57) or not (48 <= p[10] <= 57)
            or not (48 <= p[11] <= 57)):
        raise ParseError(502, "invalid_response", "illegal status line")
    if e == 12:
        reason = EMPTY
    else:
        if p[12] != SP:
            raise ParseError(502, "invalid_response", "illegal status line")
        if _value_end(p, 13, e) != e:
            raise ParseError(502, "invalid_response", "illegal status line")
        if e == 15 and p[13] == 79 and p[14] == 75:
            reason = OK
        else:
            reason = _bytes(p + 13, e - 13)
    status = (p[9] - 48) * 100 + (p[10] - 48) * 10 + (p[11] - 48)
    v11 = p[5] == 49 and p[7] == 49
    v10 = p[5] == 49 and p[7] == 48

    hs = le + 1
    unfolded = _scan_block(p, hs, end, &f, K_RESPONSE, &blank, &ok)
    if not ok:
        raise ParseError(502, "invalid_response", "illegal header line")
    if f.err:
        raise ParseError(502, "invalid_response", "bad Content-Length or Transfer-Encoding")
    if status < 100:
        raise ParseError(502, "invalid_response", "status code out of range")
    if status == 101 and not upgrade:
        raise ParseError(502, "invalid_response", "101 to a request that did not upgrade")
    if not (v11 or v10):
        raise ParseError(502, "invalid_response", "unsupported response version")
    if f.te_seen and f.cl_seen:
        raise ParseError(502, "invalid_response", "both Content-Length and Transfer-Encoding")

    if unfolded is None:
        raw = _bytes(p + hs, blank - hs)
    else:
        raw = unfolded[:blank]
    if f.need_norm:
        raw = _normalized(raw)
    content_length = _content_length_value(&f)
    if v11:
        keep_alive = not (f.conn_mask & CONN_CLOSE)
    else:
        keep_alive = (f.conn_mask & CONN_KEEP_ALIVE) and not (f.conn_mask & CONN_CLOSE)
    if status < 200 or status == 204 or status == 304 or is_head:
        framing = F_NONE
    elif f.te_seen:
        framing = F_CHUNKED
    elif f.cl_seen:
        framing = F_LENGTH if content_length > 0 else F_NONE
    else:
        framing = F_CLOSE
        keep_alive = False
    head = _new_response(
        PyLong_FromLong(status),
        reason,
        V11 if v11 else V10,
        framing,
        content_length,
        keep_alive,
        _connection_tokens(&f, raw),
        _bytes(f.upgrade.p, f.upgrade.n),
        raw,
    )
    return head, end


# --------------------------------------------------------------------------
# chunked bodies

cdef enum:
    C_SIZE = 0      # reading a chunk size line
    C_DATA = 1      # inside chunk data
    C_CR = 2        # expecting the CR after chunk data
    C_LF = 3        # expecting the LF after chunk data
    C_TRAILER = 4   # reading the trailer section
    C_DONE = 5
    C_ERROR = 6

    L_DIGITS = 0
    L_OWS = 1
    L_EXT = 2


ctypedef struct Seg:
    const char *p
    Py_ssize_t n


cdef class LengthDecoder:
    """Content-Length body: pass bytes through while counting them (base.LengthDecoder's
    behaviour; an extension type, so the per-body-segment feed runs no Python frame).
    make_decoder uses the Python one for a length over a C long long."""

    cdef public long long remaining

    def __init__(self, long long length):
        self.remaining = length

    def feed(self, data):
        cdef Py_ssize_t n = len(data)
        cdef long long rem = self.remaining
        if n < rem:
            self.remaining = rem - n
            return data, None
        self.remaining = 0
        if n == rem:
            return data, b""
        return data[:rem], data[rem:]

    def eof(self):
        """True if the connection closing now ends the body cleanly."""
        return self.remaining == 0


cdef class ChunkedDecoder:
    """Chunked body decoder (a C state machine with pure's/h11's rules).

    ``feed(data)`` returns ``(payload, None)`` while the body is incomplete
    and ``(payload, rest)`` once it ends, ``rest`` being the bytes after it.
    Trailers are validated and dropped. ``status`` is the ParseError status
    for a malformed body: 400 for requests, 502 for responses.

    A chunk size needs up to 80 bits (h11 allows 20 hex digits); one over
    2**64 - 1 is held at that value, a chunk no connection ever finishes.
    After the end, a feed returns all its bytes as leftover (pure's h11
    connection would spin on them: callers never feed a finished decoder).
    """

    cdef int _status
    cdef int _state
    cdef uint64_t _remaining     # data bytes left in the current chunk
    cdef Py_ssize_t _line_len    # bytes of the size line so far
    cdef uint64_t _size
    cdef int _ndigits
    cdef int _sub
    cdef bint _bad
    cdef bint _cr                # size line: a CR is pending
    cdef bytearray _trailer      # trailer bytes so far (None until needed)

    def __init__(self, int status=400):
        self._status = status
        self._state = C_SIZE
        self._reset_line()

    cdef inline void _reset_line(self) noexcept:
        self._line_len = 0
        self._size = 0
        self._ndigits = 0
        self._sub = L_DIGITS
        self._bad = False
        self._cr = False

    cdef object _error(self, str detail):
        self._state = C_ERROR
        return ParseError(self._status, "bad_request" if self._status == 400 else "invalid_response", detail)

    def feed(self, data):
        cdef Py_buffer view
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            return self._feed(data, <cbytes>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)

    cdef object _feed(self, object data, cbytes p, Py_ssize_t n):
        cdef Py_ssize_t pos = 0, k, nseg = 0, capseg = 16, total = 0, i
        cdef Seg stack[16]
        cdef Seg *segs = stack
        cdef Seg *grown
        cdef unsigned char c
        cdef int hv
        cdef object rest = None
        cdef bytes out
        cdef char *w
        if n == 0:
            return EMPTY, None  # "no new bytes", never end of stream
        if self._state == C_DONE:
            return EMPTY, _bytes(p, n)
        if self._state == C_ERROR:
            raise self._error("chunked body already refused")
        try:
            while pos < n:
                if self._state == C_DATA:
                    k = n - pos
                    if <uint64_t>k > self._remaining:
                        k = <Py_ssize_t>self._remaining
                    if nseg == capseg:
                        grown = <Seg *>PyMem_Malloc(2 * capseg * sizeof(Seg))
                        if grown == NULL:
                            raise MemoryError()
                        memcpy(grown, segs, nseg * sizeof(Seg))
                        if segs != stack:
                            PyMem_Free(segs)
                        segs = grown
                        capseg *= 2
                    segs[nseg].p = <const char *>(p + pos)
                    segs[nseg].n = k
                    nseg += 1
                    total += k
                    pos += k
                    if self._remaining != UINT64_MAX:  # saturated: never ends
                        self._remaining -= k
                    if self._remaining == 0:
                        self._state = C_CR
                elif self._state == C_SIZE:
                    # chunk-size line (h11): 1*20HEXDIG [";" *(any but LF)] *(SP/HTAB) CRLF,
                    # whitespace only without an extension; judged once the CRLF is in
                    while pos < n:
                        c = p[pos]
                        pos += 1
                        self._line_len += 1
                        if self._cr:
                            self._cr = False
                            if c == LF:
                                break
                            if self._sub != L_EXT:
                                self._bad = True  # a CR that does not end the line
                        if c == CR:
                            self._cr = True
                        elif c == LF:
                            self._bad = True
                        elif self._sub == L_DIGITS:
                            hv = HEXV[c]
                            if hv >= 0:
                                self._ndigits += 1
                                if self._ndigits > 20:
                                    self._bad = True
                                elif self._size >> 60:
                                    self._size = UINT64_MAX
                                else:
                                    self._size = (self._size << 4) | hv
                            elif c == SEMI:
                                self._sub = L_EXT
                            elif c == SP or c == HT:
                                self._sub = L_OWS
                            else:
                                self._bad = True
                        elif self._sub == L_OWS:
                            if c != SP and c != HT:
                                self._bad = True
                    else:
                        break  # the line continues in a later feed
                    if self._bad or self._ndigits == 0:
                        raise self._error("illegal chunk header")
                    if self._size == 0:
                        self._state = C_TRAILER
                        self._trailer = None
                    else:
                        self._remaining = self._size
                        self._state = C_DATA
                    self._reset_line()
                elif self._state == C_CR:
                    if p[pos] != CR:
                        raise self._error("malformed chunk footer")
                    pos += 1
                    self._state = C_LF
                elif self._state == C_LF:
                    if p[pos] != LF:
                        raise self._error("malformed chunk footer")
                    pos += 1
                    self._state = C_SIZE
                else:  # C_TRAILER
                    k = self._trailer_feed(p + pos, n - pos)
                    if k < 0:
                        pos = n
                        break
                    pos += k
                    self._state = C_DONE
                    rest = EMPTY if pos == n else _bytes(p + pos, n - pos)
                    break
            if self._state == C_SIZE and self._line_len > MAX_CHUNK_LINE:
                raise self._error("chunk header line too long")
            if self._state == C_TRAILER and self._trailer is not None and len(self._trailer) > MAX_CHUNK_LINE:
                raise self._error("trailer section too long")
            if nseg == 0:
                out = EMPTY
            elif nseg == 1 and total == n and type(data) is bytes:
                out = <bytes>data
            else:
                out = PyBytes_FromStringAndSize(NULL, total)
                w = PyBytes_AS_STRING(out)
                for i in range(nseg):
                    memcpy(w, segs[i].p, segs[i].n)
                    w += segs[i].n
            return out, rest
        finally:
            if segs != stack:
                PyMem_Free(segs)

    cdef Py_ssize_t _trailer_feed(self, cbytes p, Py_ssize_t n) except -2:
        """Take trailer bytes; how many of ``p`` ended the section, or -1 (more needed)."""
        cdef bytearray tb = self._trailer
        cdef Py_ssize_t old, e, blank = 0
        cdef cbytes q
        cdef Facts f
        cdef bint ok = False
        if tb is None:
            # the usual case: no trailers, the section is one empty line
            if p[0] == LF:
                return 1
            if n >= 2 and p[0] == CR and p[1] == LF:
                return 2
            tb = self._trailer = bytearray()
        old = len(tb)
        tb += _bytes(p, n)
        q = <cbytes>PyByteArray_AS_STRING(tb)
        n = len(tb)
        if q[0] == LF:
            e = 1
        elif n >= 2 and q[0] == CR and q[1] == LF:
            e = 2
        else:
            e = _head_end(q, n, 0)
            if e < 0:
                return -1
            _scan_block(q, 0, e, &f, K_TRAILER, &blank, &ok)
            if not ok:
                raise self._error("illegal trailer line")
            if f.err:
                raise self._error("bad Content-Length or Transfer-Encoding trailer")
        self._trailer = None
        return e - old

    def eof(self):
        """A chunked body never ends by the connection closing."""
        return False


def make_decoder(framing, content_length, error_status=400):
    """A body decoder for a head's framing (None when there is no body)."""
    if framing == FRAMING_LENGTH:
        if content_length > 9223372036854775807:
            return _PyLengthDecoder(content_length)
        return LengthDecoder(content_length)
    if framing == FRAMING_CHUNKED:
        return ChunkedDecoder(error_status)
    if framing == FRAMING_CLOSE:
        return CloseDecoder()
    return None


# --------------------------------------------------------------------------
# building heads


cdef inline bytes _tobytes(object x):
    """``x`` as ``%b`` formats it (bytes-like or ``__bytes__``)."""
    if type(x) is bytes:
        return <bytes>x
    return b"%b" % (x,)


ctypedef struct Out:
    Seg *segs
    Py_ssize_t n
    Py_ssize_t cap
    Py_ssize_t total
    Seg *stack


cdef inline int _push(Out *o, const char *p, Py_ssize_t n) except -1:
    cdef Seg *grown
    if o.n and o.segs[o.n - 1].p + o.segs[o.n - 1].n == p:
        o.segs[o.n - 1].n += n  # contiguous with the last piece: one copy
        o.total += n
        return 0
    if o.n == o.cap:
        grown = <Seg *>PyMem_Malloc(2 * o.cap * sizeof(Seg))
        if grown == NULL:
            raise MemoryError()
        memcpy(grown, o.segs, o.n * sizeof(Seg))
        if o.segs != o.stack:
            PyMem_Free(o.segs)
        o.segs = grown
        o.cap *= 2
    o.segs[o.n].p = p
    o.segs[o.n].n = n
    o.n += 1
    o.total += n
    return 0


cdef bytes _join(Out *o):
    cdef bytes out = PyBytes_FromStringAndSize(NULL, o.total)
    cdef char *w = PyBytes_AS_STRING(out)
    cdef Py_ssize_t i
    for i in range(o.n):
        memcpy(w, o.segs[i].p, o.segs[i].n)
        w += o.segs[i].n
    return out


# Names every built head drops: HOP_BY_HOP (and Host for requests, which
# the builder writes itself). Kept as C spans over these bytes objects.
cdef tuple HOP_NAMES = tuple(sorted(HOP_BY_HOP)) + (b"host",)
cdef int N_HOP = len(HOP_NAMES) - 1

cdef enum:
    MAX_FAST_NAMES = 40


ctypedef struct Names:
    Span v[MAX_FAST_NAMES]
    int n
    uint64_t lens          # bit i set: some name of length i (length < 64)
    bint long_names


cdef inline bint _name_add(Names *ns, object x) noexcept:
    """Add a dropped name; False when it cannot be compared in C."""
    cdef Py_ssize_t k
    if type(x) is not bytes:
        # pure tests ``lowercased name in drop``: only bytes can match (a
        # bytes subclass could, with its own __eq__/__hash__: leave it to sets)
        return not isinstance(x, bytes)
    if ns.n == MAX_FAST_NAMES:
        return False
    k = PyBytes_GET_SIZE(x)
    ns.v[ns.n].p = <cbytes>PyBytes_AS_STRING(x)
    ns.v[ns.n].n = k
    ns.n += 1
    if k < 64:
        ns.lens |= (<uint64_t>1) << k
    else:
        ns.long_names = True
    return True


# The last ``drop`` frozenset seen by each builder and its table (the
# proxy passes the same one every time); the reference keeps its names alive.
cdef object REQUEST_DROP = None
cdef object RESPONSE_DROP = None
cdef Names REQUEST_NAMES
cdef Names RESPONSE_NAMES


cdef Names *_names_init(Names *local, Names *conn_names, bint request, object drop, object conn) except? NULL:
    """The table of dropped names (HOP_BY_HOP, Host for requests, ``drop``),
    cached for the last ``drop`` frozenset, and ``conn_names`` filled with the
    Connection tokens. NULL when they cannot all be compared in C (too many,
    or bytes subclasses): the caller then uses set look-ups, like pure."""
    global REQUEST_DROP, RESPONSE_DROP
    cdef int i
    cdef Names *ns
    conn_names.n = 0
    conn_names.lens = 0
    conn_names.long_names = False
    if len(conn):
        if len(conn) > MAX_FAST_NAMES:
            return NULL
        for x in conn:
            if not _name_add(conn_names, x):
                return NULL
    if request and drop is REQUEST_DROP:
        return &REQUEST_NAMES
    if not request and drop is RESPONSE_DROP:
        return &RESPONSE_NAMES
    ns = local
    ns.n = 0
    ns.lens = 0
    ns.long_names = False
    for i in range(N_HOP + (1 if request else 0)):
        _name_add(ns, HOP_NAMES[i])
    if len(drop) > MAX_FAST_NAMES - N_HOP - 1:
        return NULL
    for x in drop:
        if not _name_add(ns, x):
            return NULL
    if type(drop) is frozenset:
        if request:
            memcpy(&REQUEST_NAMES, ns, sizeof(Names))
            REQUEST_DROP = drop
            return &REQUEST_NAMES
        memcpy(&RESPONSE_NAMES, ns, sizeof(Names))
        RESPONSE_DROP = drop
        return &RESPONSE_NAMES
    return ns


cdef inline bint _in_names(Names *ns, cbytes name, Py_ssize_t nn) noexcept nogil:
    """The lowercased name is one of ``ns`` (as pure: lower(name) == entry)."""
    cdef int i
    cdef Py_ssize_t j
    cdef cbytes q
    if nn < 64:
        if not (ns.lens >> nn) & 1:
            return False
    elif not ns.long_names:
        return False
    for i in range(ns.n):
        if ns.v[i].n != nn:
            continue
        q = ns.v[i].p
        for j in range(nn):
            if LOWER[name[j]] != q[j]:
                break
        else:
            return True
    return False


cdef inline bint _dropped(Names *ns, Names *conn_names, cbytes name, Py_ssize_t nn) noexcept nogil:
    return _in_names(ns, name, nn) or (conn_names.n and _in_names(conn_names, name, nn))


cdef bint _dropped_slow(bytes name, bint request, object drop, object conn) except -1:
    low = name.lower()
    return low in HOP_BY_HOP or low in drop or low in conn or (request and low == b"host")


cdef inline int _push_line(Out *o, const char *name, Py_ssize_t nn, const char *value, Py_ssize_t vn) except -1:
    _push(o, name, nn)
    _push(o, b": ", 2)
    _push(o, value, vn)
    return _push(o, b"\r\n", 2)


cdef list _push_headers(Out *o, bytes raw, object pairs, bint request, object drop, object conn, list keep):
    """Push the kept ``name: value`` lines, from ``raw`` (split like
    ``base.split_header_block``) or from ``pairs``. Returns ``keep``, the
    list holding converted objects the segments point into (None if none)."""
    cdef Names local, conn_names
    cdef Names *ns = _names_init(&local, &conn_names, request, drop, conn)
    cdef bint fast = ns != NULL
    cdef cbytes p, nl, colon
    cdef Py_ssize_t n, pos, le, e, vs, ve, nn
    cdef bytes bname, bvalue
    if pairs is None:
        p = <cbytes>PyBytes_AS_STRING(raw)
        n = PyBytes_GET_SIZE(raw)
        pos = 0
        while pos < n:
            nl = <cbytes>memchr(p + pos, LF, n - pos)
            le = n if nl == NULL else nl - p
            e = le
            if e > pos and p[e - 1] == CR:
                e -= 1
            if e > pos:
                colon = <cbytes>memchr(p + pos, COLON, e - pos)
                if colon == NULL:
                    nn = e - pos
                    vs = ve = e
                else:
                    nn = colon - (p + pos)
                    vs = colon - p + 1
                    ve = e
                    while vs < ve and _ows(p[vs]):
                        vs += 1
                    while ve > vs and _ows(p[ve - 1]):
                        ve -= 1
                if (not _dropped(ns, &conn_names, p + pos, nn)) if fast else (
                        not _dropped_slow(_bytes(p + pos, nn), request, drop, conn)):
                    if vs == pos + nn + 2 and p[vs - 1] == SP and ve == e and e + 1 == le and le < n:
                        # already "name: value\r\n" as it will be sent: one piece
                        _push(o, <const char *>(p + pos), le + 1 - pos)
                    else:
                        _push_line(o, <const char *>(p + pos), nn, <const char *>(p + vs), ve - vs)
            pos = le + 1
        return keep
    if fast and ns != &local:
        # user code may run below (lower, __bytes__) and re-enter a builder
        # that replaces the cached table: work on a private copy
        memcpy(&local, ns, sizeof(Names))
        ns = &local
    for name, value in pairs:
        if type(name) is bytes:
            bname = <bytes>name
        else:
            name.lower()  # what pure calls first (same TypeError for the same inputs)
            bname = _tobytes(name)
            keep = _keep(keep, bname)
        if fast:
            if _dropped(ns, &conn_names, <cbytes>PyBytes_AS_STRING(bname), PyBytes_GET_SIZE(bname)):
                continue
        elif _dropped_slow(bname, request, drop, conn):
            continue
        bvalue = _tobytes(value)
        if bvalue is not value:
            keep = _keep(keep, bvalue)
        _push_line(o, PyBytes_AS_STRING(bname), PyBytes_GET_SIZE(bname),
                   PyBytes_AS_STRING(bvalue), PyBytes_GET_SIZE(bvalue))
    return keep


cdef inline list _keep(list keep, bytes b):
    if keep is None:
        keep = []
    keep.append(b)
    return keep


cdef list _push_extra(Out *o, object extra, list keep):
    cdef bytes bname, bvalue
    for name, value in extra:
        bname = _tobytes(name)
        bvalue = _tobytes(value)
        if bname is not name:
            keep = _keep(keep, bname)
        if bvalue is not value:
            keep = _keep(keep, bvalue)
        _push_line(o, PyBytes_AS_STRING(bname), PyBytes_GET_SIZE(bname),
                   PyBytes_AS_STRING(bvalue), PyBytes_GET_SIZE(bvalue))
    return keep


def build_request_head(head, target, host, drop, extra):
    """Serialise the request head sent upstream (see pure)."""
    cdef Seg stack[64]
    cdef Out o
    cdef list keep = None
    cdef bint direct = RQ_DIRECT and type(head) is RequestHead
    cdef bytes bmethod = _tobytes(_get(head, RQ[0], direct, "method"))
    cdef bytes btarget = _tobytes(target)
    cdef bytes bhost = _tobytes(host)
    cdef object raw = None, pairs
    conn = _get(head, RQ[7], direct, "connection")
    pairs = _get(head, RQ[14], direct, "_headers") if direct else getattr(head, "_headers", head)
    if pairs is None:
        raw = _get(head, RQ[13], direct, "raw")
        if type(raw) is not bytes:
            raw = None
            pairs = head.headers
    elif pairs is head:  # not a codec head: only ``headers`` is known
        pairs = head.headers
    o.segs = o.stack = stack
    o.n = o.total = 0
    o.cap = 64
    try:
        _push(&o, PyBytes_AS_STRING(bmethod), PyBytes_GET_SIZE(bmethod))
        _push(&o, b" ", 1)
        _push(&o, PyBytes_AS_STRING(btarget), PyBytes_GET_SIZE(btarget))
        _push(&o, b" HTTP/1.1\r\nHost: ", 17)
        _push(&o, PyBytes_AS_STRING(bhost), PyBytes_GET_SIZE(bhost))
        _push(&o, b"\r\n", 2)
        keep = _push_headers(&o, raw, pairs, True, drop, conn, keep)
        keep = _push_extra(&o, extra, keep)
        _push(&o, b"\r\n", 2)
        return _join(&o)
    finally:
        if o.segs != o.stack:
            PyMem_Free(o.segs)


def build_response_head(head, drop, extra):
    """Serialise the response head sent downstream, status line HTTP/1.1 (see pure)."""
    cdef Seg stack[64]
    cdef Out o
    cdef list keep = None
    cdef bint direct = RS_DIRECT and type(head) is ResponseHead
    cdef char digits[3]
    cdef long s
    cdef bytes bstatus = None
    cdef object raw = None, pairs
    status = _get(head, RS[0], direct, "status")
    cdef bytes breason = _tobytes(_get(head, RS[1], direct, "reason"))
    conn = _get(head, RS[6], direct, "connection")
    pairs = _get(head, RS[9], direct, "_headers") if direct else getattr(head, "_headers", head)
    if pairs is None:
        raw = _get(head, RS[8], direct, "raw")
        if type(raw) is not bytes:
            raw = None
            pairs = head.headers
    elif pairs is head:
        pairs = head.headers
    if type(status) is int and 100 <= status <= 999:
        s = status
        digits[0] = <char>(48 + s // 100)
        digits[1] = <char>(48 + (s // 10) % 10)
        digits[2] = <char>(48 + s % 10)
    else:
        bstatus = b"%d" % (status,)
    o.segs = o.stack = stack
    o.n = o.total = 0
    o.cap = 64
    try:
        _push(&o, b"HTTP/1.1 ", 9)
        if bstatus is None:
            _push(&o, digits, 3)
        else:
            _push(&o, PyBytes_AS_STRING(bstatus), PyBytes_GET_SIZE(bstatus))
        _push(&o, b" ", 1)
        _push(&o, PyBytes_AS_STRING(breason), PyBytes_GET_SIZE(breason))
        _push(&o, b"\r\n", 2)
        keep = _push_headers(&o, raw, pairs, False, drop, conn, keep)
        keep = _push_extra(&o, extra, keep)
        _push(&o, b"\r\n", 2)
        return _join(&o)
    finally:
        if o.segs != o.stack:
            PyMem_Free(o.segs)
