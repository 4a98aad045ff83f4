"""Removing private metadata from a JPEG, PNG or WebP file without touching its pixel data.

A product photo that already fits HiDream's limits is sent as the shop's own file, so that it
is not re-encoded (which would cost quality and time). Such a file may carry EXIF (with the
GPS position where it was taken, the camera's serial number), XMP, IPTC and comments.
``strip_metadata`` copies the file's container, chunk by chunk or segment by segment, and
leaves out everything that is not needed to show the picture. The compressed pixel data is
copied byte for byte: the picture decodes to exactly the same pixels.

What is kept is an allow-list, not a deny-list: metadata comes in more places than EXIF and
XMP (IPTC in APP13, C2PA/JUMBF in APP11, GoPro telemetry with its GPS track in APP6, the
Photoshop "Ducky" comment in APP12, PNG private chunks, previews appended after the image
with their own EXIF), and an unknown chunk left in could be any of them. Kept is what a
decoder needs to show the picture right, the ICC colour profile included (a wide-gamut photo
without its profile looks dull).

Both engines of ``images.prepare_source`` call this module. The file has already been decoded
whole by Pillow or libvips, but the stripper checks the structure again rather than trust it:
anything it does not understand (a truncated segment, a length that points past the end, an
unknown critical chunk, a CRC mismatch) raises ``MetadataError`` and the caller encodes the
picture anew instead. Every step reads at least one byte or raises, so a damaged file cannot
make it loop forever, and no declared length is ever allocated at once: the file is read in
pieces of ``PIECE`` bytes, so a large file is never whole in memory.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from typing import IO

#: Bytes read (and written) at a time.
PIECE = 64 * 1024
#: In a JPEG scan's entropy-coded data: a 0xFF that starts a marker, i.e. that is followed by
#: neither 0x00 (a stuffed 0xFF) nor RST0-RST7 (both part of the data; T.81 §B.1.1.5, §F.1.2.3).
#: Searched for by the regex engine: a scan has an 0xFF every hundred bytes or so.
MARKER_IN_SCAN = re.compile(rb"\xff(?![\x00\xd0-\xd7])")


class MetadataError(ValueError):
    """The file is not one the stripper understands; ``str()`` says what and where.

    What was written to the output before the error is incomplete and must be thrown away.
    """


def strip_metadata(src: IO[bytes], dst: IO[bytes], fmt: str) -> None:
    """Copy the image in ``src`` (at its current position) to ``dst`` without its metadata.

    ``fmt`` is Pillow's name of the format ("JPEG", "PNG" or "WEBP"). Left out: EXIF, XMP,
    IPTC, comments and text; kept: the ICC profile and all that is needed to decode and show
    the picture, the compressed pixel data byte for byte. Anything after the image's end
    marker (JPEG EOI, PNG IEND, the RIFF size of a WebP) is left out too. ``dst`` must be
    seekable for a WebP (its RIFF size is written once the kept chunks are known).

    Raises ``MetadataError`` for a file it does not understand; ``dst`` then holds an
    incomplete copy, to be thrown away.
    """
    reader = _Reader(src, fmt)
    if fmt == "JPEG":
        _strip_jpeg(reader, dst)
    elif fmt == "PNG":
        _strip_png(reader, dst)
    elif fmt == "WEBP":
        _strip_webp(reader, dst)
    else:
        raise MetadataError(f"{fmt or 'an unknown format'} files are not stripped of metadata")


def strip_metadata_bytes(data: bytes, fmt: str) -> bytes:
    """``strip_metadata`` for a file already in memory: the stripped file's bytes."""
    out = io.BytesIO()
    strip_metadata(io.BytesIO(data), out, fmt)
    return out.getvalue()


def icc_colour_space(profile: bytes | None) -> str | None:
    """The colour space an ICC profile describes ("RGB", "GRAY", "CMYK", ...), or None when
    ``profile`` does not look like an ICC profile at all.

    Used to attach a profile to re-encoded pixels only while it still describes them: a
    greyscale or CMYK profile on pixels converted to RGB would make viewers show wrong
    colours. The header is checked (ICC.1:2022 §7.2: the size at bytes 0-3 within the data,
    the signature "acsp" at 36-39); the colour space is the signature at bytes 16-19.
    """
    if not profile or len(profile) < 128 or profile[36:40] != b"acsp":
        return None
    if not 128 <= struct.unpack(">I", profile[:4])[0] <= len(profile):
        return None
    return profile[16:20].decode("latin-1").strip() or None


class _Reader:
    """Buffered reads of exact lengths from a stream; a shortfall is a ``MetadataError``.

    ``read`` is for small things (headers, JPEG segments of at most 64 KiB); ``copy`` moves
    (or skips) any length in pieces, so a length read from the file is never allocated.
    """

    def __init__(self, src: IO[bytes], fmt: str):
        self._src = src
        self._fmt = fmt
        self._buf = b""
        self._pos = 0
        self._before = 0  # bytes of the stream before ``_buf``, for the offsets in errors

    @property
    def offset(self) -> int:
        return self._before + self._pos

    def error(self, text: str) -> MetadataError:
        return MetadataError(f"{self._fmt}: {text} (at byte {self.offset})")

    def _more(self) -> bool:
        """Read another piece onto what is left of the buffer; False at the end."""
        piece = self._src.read(PIECE)
        if not piece:
            return False
        self._before += self._pos
        self._buf = self._buf[self._pos :] + piece
        self._pos = 0
        return True

    def _have(self, n: int) -> bool:
        while len(self._buf) - self._pos < n:
            if not self._more():
                return False
        return True

    def read(self, n: int, what: str) -> bytes:
        if not self._have(n):
            raise self.error(f"the file ends inside {what}")
        data = self._buf[self._pos : self._pos + n]
        self._pos += n
        return data

    def copy(self, n: int, dst: IO[bytes] | None, what: str, crc: int = 0) -> int:
        """Move ``n`` bytes to ``dst`` (None: skip them); the CRC-32 of them, from ``crc``."""
        while n:
            if self._pos == len(self._buf) and not self._more():
                raise self.error(f"the file ends inside {what}")
            piece = memoryview(self._buf)[self._pos : self._pos + n]
            if dst is not None:
                dst.write(piece)
                crc = zlib.crc32(piece, crc)
            self._pos += len(piece)
            n -= len(piece)
        return crc

    def copy_entropy_coded(self, dst: IO[bytes]) -> int:
        """Copy a JPEG scan's entropy-coded data to ``dst``, byte for byte; the code of the
        marker that ends it (read, with its 0xFF, but not written).

        The data runs up to the first 0xFF that starts a marker (``MARKER_IN_SCAN``). Fill
        bytes (more 0xFF) before that marker are not copied.
        """
        while True:
            if not self._have(2):
                raise self.error("the file ends inside a scan's data, before its end marker")
            buf, start = self._buf, self._pos
            found = MARKER_IN_SCAN.search(buf, start)
            # No marker here, or an 0xFF last, whose next byte is not read yet: copy what
            # comes before and read on (``_have(2)`` reads, or stops at the end).
            end = len(buf) if found is None else found.start()
            dst.write(memoryview(buf)[start:end])
            if found is None or end + 1 >= len(buf):
                self._pos = end
                continue
            self._pos = end + 1
            return self._marker_code()

    def next_marker(self) -> int:
        """The code of the JPEG marker that must come next (0xFF, fill bytes, the code)."""
        if self.read(1, "a marker")[0] != 0xFF:
            raise self.error("a marker was expected here")
        return self._marker_code()

    def _marker_code(self) -> int:
        code = 0xFF
        while code == 0xFF:  # fill bytes; each one read, so a run of them ends at the end
            code = self.read(1, "a marker")[0]
        if code == 0x00:
            raise self.error("a stuffed 0xFF is outside a scan's data")
        return code


# -- JPEG (ITU-T T.81 Annex B; JFIF; ICC.1 Annex B.4 for the profile in APP2) -----------------

SOI, EOI, SOS, TEM, COM = 0xD8, 0xD9, 0xDA, 0x01, 0xFE
APP0, APP2, APP14 = 0xE0, 0xE2, 0xEE
#: Start of frame, every coding process (0xC4 is DHT, 0xC8 a reserved JPG, 0xCC DAC).
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: The segments that describe the picture's coding, kept whole: the frames, DHT, DAC, SOS,
#: DQT, DNL, DRI, DHP, EXP.
CODING_MARKERS = SOF_MARKERS | {0xC4, 0xCC, SOS, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF}
#: JFIF's fixed part: "JFIF\0", version, units, X and Y density, thumbnail width and height.
JFIF_HEADER = 14


def _strip_jpeg(reader: _Reader, dst: IO[bytes]) -> None:
    if reader.read(2, "the start-of-image marker") != b"\xff\xd8":
        raise reader.error("no start-of-image marker: not a JPEG")
    dst.write(b"\xff\xd8")
    seen_frame = seen_scan = False
    marker = reader.next_marker()
    while True:
        if marker == EOI:
            if not seen_scan:
                raise reader.error("the image ends before any scan")
            # What follows EOI (Multi-Picture previews with their own EXIF, vendor
            # trailers) is not part of this picture: it is left out.
            dst.write(b"\xff\xd9")
            return
        if marker == TEM:  # a marker without a segment
            dst.write(b"\xff\x01")
            marker = reader.next_marker()
            continue
        if marker not in CODING_MARKERS and not 0xE0 <= marker <= 0xEF and marker != COM:
            # SOI again, a restart outside a scan, JPG/JPGn/RES: a decoder that meets one
            # would stop or guess; so do not send a copy of it.
            raise reader.error(f"unexpected marker 0xFF{marker:02X}")
        length_bytes = reader.read(2, f"the length of segment 0xFF{marker:02X}")
        length = struct.unpack(">H", length_bytes)[0]
        if length < 2:
            raise reader.error(f"segment 0xFF{marker:02X} declares an impossible length {length}")
        payload = reader.read(length - 2, f"segment 0xFF{marker:02X}")
        kept = _kept_jpeg_segment(marker, payload)
        if kept is not None:
            dst.write(bytes((0xFF, marker)) + struct.pack(">H", len(kept) + 2) + kept)
        if marker in SOF_MARKERS:
            seen_frame = True
        if marker == SOS:
            if not seen_frame:
                raise reader.error("a scan comes before the frame header")
            seen_scan = True
            marker = reader.copy_entropy_coded(dst)
        else:
            marker = reader.next_marker()


def _kept_jpeg_segment(marker: int, payload: bytes) -> bytes | None:
    """What of a segment's payload to keep (None: leave the segment out)."""
    if marker in CODING_MARKERS:
        return payload
    if marker == APP0 and payload.startswith(b"JFIF\0") and len(payload) >= JFIF_HEADER:
        # The JFIF header tells decoders the colour space (YCbCr) and the pixel density.
        # Its optional thumbnail is not kept: a preview can show what a crop removed.
        return payload[: JFIF_HEADER - 2] + b"\0\0"
    if marker == APP2 and payload.startswith(b"ICC_PROFILE\0"):
        return payload  # the colour profile, possibly in several numbered segments
    if marker == APP14 and payload.startswith(b"Adobe"):
        return payload  # its transform flag says whether the data is YCbCr/YCCK or RGB/CMYK
    # Every other APPn (APP1 EXIF and XMP, APP2 MPF/FlashPix, APP13 IPTC, APP11 C2PA, ...)
    # and COM: metadata, never needed to show the picture.
    return None


# -- PNG (PNG specification, third edition; APNG) --------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: The critical chunks; a decoder must refuse a file with any other.
PNG_CRITICAL = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND"})
#: Ancillary chunks kept: transparency, colour (the ICC profile in iCCP, sRGB, gamma,
#: chromaticities, cICP and HDR mastering data), significant bits, background, histogram,
#: pixel density, suggested palettes, and APNG's animation. Left out: tEXt, zTXt, iTXt
#: (comments, XMP, "Raw profile" EXIF), eXIf, tIME, and any other chunk (private chunks,
#: Apple's iDOT, whose offsets would be wrong once chunks before IDAT are gone).
PNG_KEPT = PNG_CRITICAL | {
    b"tRNS",
    b"iCCP",
    b"sRGB",
    b"gAMA",
    b"cHRM",
    b"cICP",
    b"mDCV",
    b"cLLI",
    b"sBIT",
    b"bKGD",
    b"hIST",
    b"pHYs",
    b"sPLT",
    b"acTL",
    b"fcTL",
    b"fdAT",
}
PNG_MAX_LENGTH = 2**31 - 1  # a chunk's length "shall not exceed 2^31-1 bytes"


def _strip_png(reader: _Reader, dst: IO[bytes]) -> None:
    if reader.read(8, "the PNG signature") != PNG_SIGNATURE:
        raise reader.error("no PNG signature")
    dst.write(PNG_SIGNATURE)
    first, seen_data = True, False
    while True:
        header = reader.read(8, "a chunk header")
        length, kind = struct.unpack(">I4s", header)
        name = kind.decode("latin-1")
        if not all(65 <= c <= 90 or 97 <= c <= 122 for c in kind):
            raise reader.error(f"chunk type {kind!r} is not four ASCII letters")
        if length > PNG_MAX_LENGTH:
            raise reader.error(f"chunk {name} declares {length} bytes, more than a PNG allows")
        if first and kind != b"IHDR":
            raise reader.error(f"the first chunk is {name}, not IHDR")
        first = False
        critical = not kind[0] & 0x20  # bit 5 of the first letter: 0 = critical
        if critical and kind not in PNG_CRITICAL:
            raise reader.error(f"unknown critical chunk {name}")
        if kind in PNG_KEPT:
            dst.write(header)
            crc = reader.copy(length, dst, f"chunk {name}", zlib.crc32(kind))
            stored = reader.read(4, f"the CRC of chunk {name}")
            if struct.unpack(">I", stored)[0] != crc:
                # Decoders drop (ancillary) or refuse (critical) such a chunk: do not send it.
                raise reader.error(f"chunk {name} fails its CRC check")
            dst.write(stored)
        else:
            reader.copy(length + 4, None, f"chunk {name}")  # its data and CRC, skipped
        if kind == b"IDAT":
            seen_data = True
        elif kind == b"IEND":
            if not seen_data:
                raise reader.error("IEND comes before any IDAT")
            return  # what follows IEND is not part of the picture: left out


# -- WebP (RIFF container, RFC 9649) ---------------------------------------------------------

#: Chunks kept: the extended header, colour profile, animation, alpha and image data.
#: Left out: EXIF, "XMP " and any unknown chunk (decoders ignore unknown chunks).
WEBP_KEPT = frozenset({b"VP8X", b"ICCP", b"ANIM", b"ANMF", b"ALPH", b"VP8 ", b"VP8L"})
WEBP_IMAGE = frozenset({b"VP8 ", b"VP8L", b"ANMF"})
VP8X_SIZE = 10
VP8X_EXIF, VP8X_XMP = 0x08, 0x04  # the flag bits that announce EXIF and XMP chunks


def _strip_webp(reader: _Reader, dst: IO[bytes]) -> None:
    header = reader.read(12, "the RIFF header")
    if header[:4] != b"RIFF" or header[8:] != b"WEBP":
        raise reader.error("no RIFF WEBP header")
    remaining = struct.unpack("<I", header[4:8])[0] - 4  # the RIFF size counts "WEBP"
    if remaining < 8:
        raise reader.error("the RIFF size leaves no room for a chunk")
    start = dst.tell()
    dst.write(b"RIFF\0\0\0\0WEBP")  # the size is written at the end
    size, first, seen_image = 4, True, False
    while remaining:
        if remaining < 8:
            raise reader.error("the RIFF size ends inside a chunk header")
        chunk_header = reader.read(8, "a chunk header")
        kind = chunk_header[:4]
        length = struct.unpack("<I", chunk_header[4:])[0]
        padded = length + (length & 1)  # chunks are padded to an even size
        if padded > remaining - 8:
            raise reader.error(f"chunk {kind!r} runs past the RIFF size")
        remaining -= 8 + padded
        if kind == b"VP8X":
            if not first or length != VP8X_SIZE:
                raise reader.error("a VP8X chunk that is not a 10-byte first chunk")
            payload = reader.read(VP8X_SIZE, "the VP8X chunk")
            # The EXIF and XMP chunks are left out, so the header must not announce them.
            flags = payload[0] & ~(VP8X_EXIF | VP8X_XMP)
            dst.write(chunk_header + bytes((flags,)) + payload[1:])
            size += 8 + VP8X_SIZE
        elif kind in WEBP_KEPT:
            dst.write(chunk_header)
            reader.copy(padded, dst, f"chunk {kind!r}")
            size += 8 + padded
            seen_image = seen_image or kind in WEBP_IMAGE
        else:
            reader.copy(padded, None, f"chunk {kind!r}")
        first = False
    if not seen_image:
        raise reader.error("no image data chunk")
    # Bytes after the RIFF size are not part of the file: left out.
    end = dst.tell()
    dst.seek(start + 4)
    dst.write(struct.pack("<I", size))
    dst.seek(end)
