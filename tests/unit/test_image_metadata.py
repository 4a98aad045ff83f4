"""``image_metadata``: taking EXIF, XMP, IPTC and comments out of a JPEG, PNG or WebP file while
its compressed pixel data and ICC profile stay as they are.

Files are real, written by Pillow with its ``exif=``, ``xmp=``, ``comment=`` and
``icc_profile=`` options, with hand-made segments and chunks added where Pillow writes none
(IPTC, C2PA, private chunks, trailers). The strongest checks compare with Pillow's own file of
the same picture written without metadata: stripping must give exactly its bytes.

The helpers here (profiles, photos with metadata, the container walkers) are used by the
``prepare_source`` tests of ``test_images_vips.py`` too. The walkers are written apart from the
module under test, as simply as the specifications allow, so that they check it.
"""

from __future__ import annotations

import contextlib
import io
import random
import signal
import struct
import zlib

import pytest
from PIL import Image, ImageCms, PngImagePlugin

from hidream_models import image_metadata
from hidream_models.image_metadata import (
    PIECE,
    MetadataError,
    icc_colour_space,
    strip_metadata,
    strip_metadata_bytes,
)

ORIENTATION = 0x0112
ARTIST = 0x013B
GPS_IFD = 0x8825
#: Strings put in every kind of metadata: none may be found in a stripped file.
SECRETS = (
    b"Jane Photographer",  # EXIF Artist
    b"xmp-secret",  # XMP
    b"comment-secret",  # JPEG COM, PNG text
    b"iptc-secret",  # IPTC in APP13
    b"c2pa-secret",  # JUMBF in APP11
    b"trailer-secret",  # after the end of the image
)
XMP = (
    b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
    b"<dc:creator>xmp-secret</dc:creator></rdf:Description></rdf:RDF></x:xmpmeta>"
    b'<?xpacket end="w"?>'
)


# -- ICC profiles ---------------------------------------------------------------------------


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)


def _curve(gamma: float) -> bytes:
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"


def _desc(text: str) -> bytes:
    ascii_ = text.encode("ascii") + b"\0"
    return b"desc\0\0\0\0" + struct.pack(">I", len(ascii_)) + ascii_ + bytes(8 + 3 + 67)


def icc_profile(space: bytes, description: str, tags: list[tuple[bytes, bytes]]) -> bytes:
    """A version 2 display ICC profile (ICC.1:2001-04) with the given tags."""
    tags = [(b"desc", _desc(description)), (b"cprt", b"text\0\0\0\0none\0"), *tags]
    tags.append((b"wtpt", _xyz(0.9642, 1.0, 0.8249)))
    start = 128 + 4 + 12 * len(tags)
    table = body = b""
    for signature, data in tags:
        table += signature + struct.pack(">II", start + len(body), len(data))
        body += data + bytes(-len(data) % 4)
    header = struct.pack(">I", start + len(body)) + bytes(4) + b"\x02\x10\0\0mntr"
    header += space + b"XYZ " + bytes(12) + b"acsp" + bytes(28)
    header += _s15(0.9642) + _s15(1.0) + _s15(0.8249)
    header += bytes(128 - len(header))
    return header + struct.pack(">I", len(tags)) + table + body


#: A wide-gamut RGB profile (Display P3's primaries, adapted to D50; a 2.2 gamma): the kind of
#: profile whose loss makes a photo look dull. Its bytes are unlike any profile libvips or
#: Pillow would attach of their own accord.
P3_PROFILE = icc_profile(
    b"RGB ",
    "Display P3-like test profile",
    [
        (b"rXYZ", _xyz(0.5151, 0.2412, -0.0011)),
        (b"gXYZ", _xyz(0.2920, 0.6922, 0.0419)),
        (b"bXYZ", _xyz(0.1571, 0.0666, 0.7841)),
        (b"rTRC", _curve(2.2)),
        (b"gTRC", _curve(2.2)),
        (b"bTRC", _curve(2.2)),
    ],
)
GREY_PROFILE = icc_profile(b"GRAY", "Grey test profile", [(b"kTRC", _curve(2.2))])


# -- photos with metadata ---------------------------------------------------------------------


def private_exif(orientation: int | None = None) -> Image.Exif:
    """EXIF as a phone writes it: the photographer, and where the photo was taken."""
    exif = Image.Exif()
    exif[ARTIST] = "Jane Photographer"
    if orientation:
        exif[ORIENTATION] = orientation
    gps = exif.get_ifd(GPS_IFD)
    gps[1], gps[2] = "N", (48.0, 51.0, 29.0)  # GPSLatitudeRef, GPSLatitude
    gps[3], gps[4] = "E", (2.0, 17.0, 40.0)  # GPSLongitudeRef, GPSLongitude
    return exif


def picture(size=(300, 200), mode="RGB") -> Image.Image:
    """A coloured left half on a light background (the sides tell a rotation apart), with
    some noise, so that compressed data is not trivial; the same picture every time."""
    image = Image.new("RGB", size, (245, 245, 240))
    image.paste((200, 40, 60), (0, 0, size[0] // 2, size[1]))
    grain = random.Random(size[0] * size[1]).randbytes(size[0] * size[1])
    image = Image.blend(image, Image.frombytes("L", size, grain).convert("RGB"), 0.1)
    if mode == "RGBA":
        image.putalpha(Image.linear_gradient("L").resize(size))
    elif mode != "RGB":
        image = image.convert(mode)
    return image


def png_text_chunks() -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "comment-secret")  # tEXt
    info.add_text("Author", "Jane Photographer", zip=True)  # zTXt
    info.add_itxt("XML:com.adobe.xmp", XMP.decode("utf-8"))  # iTXt, as XMP is stored
    info.add(b"tIME", struct.pack(">HBBBBB", 2024, 5, 17, 9, 30, 0))
    return info


def photo(
    fmt: str,
    size=(300, 200),
    *,
    orientation: int | None = None,
    mode: str = "RGB",
    icc: bytes | None = P3_PROFILE,
    metadata: bool = True,
    **options,
) -> bytes:
    """A photo as the shop may hold it: EXIF with a GPS position, XMP, a comment (JPEG) or
    text chunks (PNG), and an ICC profile. ``metadata=False``: the same file without any but
    the profile, as Pillow writes it (the reference a stripped file must equal)."""
    image = picture(size, mode)
    if icc:
        options["icc_profile"] = icc
    if metadata:
        options["exif"] = private_exif(orientation)
        if fmt == "JPEG":
            options.update(comment=b"comment-secret", xmp=XMP)
        elif fmt == "PNG":
            options["pnginfo"] = png_text_chunks()
        else:
            options["xmp"] = XMP
    elif orientation:
        options["exif"] = Image.Exif()
        options["exif"][ORIENTATION] = orientation
    out = io.BytesIO()
    image.save(out, fmt, **({"quality": 90} if fmt != "PNG" else {}) | options)
    return out.getvalue()


# -- walking the containers (independently of the module under test) ---------------------------


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """The segments before the first scan, as (marker code, payload)."""
    assert data[:2] == b"\xff\xd8"
    segments, at = [], 2
    while True:
        assert data[at] == 0xFF, f"no marker at {at}"
        marker = data[at + 1]
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        segments.append((marker, data[at + 4 : at + 2 + length]))
        if marker == 0xDA:
            return segments
        at += 2 + length


def jpeg_scan_data(data: bytes) -> bytes:
    """Everything from the first SOS marker to the end: scans, their tables, EOI."""
    at = 2
    while data[at + 1] != 0xDA:
        at += 2 + struct.unpack(">H", data[at + 2 : at + 4])[0]
    return data[at:]


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = [], 8
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        chunks.append((kind, data[at + 8 : at + 8 + length]))
        at += 12 + length
    return chunks


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8, "RIFF size"
    chunks, at = [], 12
    while at < len(data):
        kind, length = data[at : at + 4], struct.unpack("<I", data[at + 4 : at + 8])[0]
        chunks.append((kind, data[at + 8 : at + 8 + length]))
        at += 8 + length + (length & 1)
    return chunks


def webp_chunk(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1)


def webp_file(chunks: list[bytes]) -> bytes:
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def pixel_data(data: bytes) -> dict:
    """The compressed pixel data of a file, as the format holds it."""
    fmt = Image.open(io.BytesIO(data)).format
    if fmt == "JPEG":
        tables = [s for s in jpeg_segments(data) if s[0] in (0xC0, 0xC2, 0xC4, 0xDB, 0xDD)]
        return {"tables": tables, "scans": jpeg_scan_data(data)}
    if fmt == "PNG":
        chunks = png_chunks(data)
        return {
            "header": [c for c in chunks if c[0] in (b"IHDR", b"PLTE", b"tRNS")],
            "IDAT": b"".join(c[1] for c in chunks if c[0] == b"IDAT"),
        }
    kept = (b"VP8 ", b"VP8L", b"ALPH", b"ANIM", b"ANMF")
    return {"chunks": [c for c in webp_chunks(data) if c[0] in kept]}


def assert_no_metadata(data: bytes) -> Image.Image:
    """The file carries no EXIF, XMP, comment or text, by Pillow's reading and in its bytes."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert not image.getexif(), dict(image.getexif())
        assert not image.getexif().get_ifd(GPS_IFD)
        private = {"exif", "xmp", "comment", "XML:com.adobe.xmp", "Comment", "Author"}
        assert not private & set(image.info), image.info.keys()
        if image.format == "PNG":
            assert not image.text
    for secret in SECRETS:
        assert secret not in data
    assert b"Exif\0\0" not in data and b"http://ns.adobe.com/xap" not in data
    return image


def pixels(data: bytes) -> tuple[str, tuple[int, int], bytes]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.mode, image.size, image.tobytes()


class ShortReads(io.BytesIO):
    """A stream that gives at most 1,000 bytes a read, as network streams may, and records
    the sizes asked for."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.asked: list[int | None] = []

    def read(self, size=-1):
        self.asked.append(size)
        return super().read(1000 if size is None or size < 0 else min(size, 1000))


@contextlib.contextmanager
def within(seconds: int):
    """Fail instead of hanging: a stripper that loops on bad input is a bug too."""

    def timeout(signum, frame):
        raise AssertionError(f"still running after {seconds} s: a loop on bad input?")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- the profiles used in these tests are real ones ----------------------------------------------


def test_the_test_profiles_are_valid_icc_profiles():
    # lcms reads them and converts with them: a test that keeps them keeps real profiles.
    p3 = ImageCms.ImageCmsProfile(io.BytesIO(P3_PROFILE))
    grey = ImageCms.ImageCmsProfile(io.BytesIO(GREY_PROFILE))
    srgb = ImageCms.createProfile("sRGB")
    red = ImageCms.profileToProfile(Image.new("RGB", (1, 1), (255, 0, 0)), p3, srgb)
    assert red.getpixel((0, 0)) == (255, 0, 0)  # P3's red is beyond sRGB: clipped
    assert ImageCms.getProfileDescription(grey).strip() == "Grey test profile"


# -- JPEG ------------------------------------------------------------------------------------------


def segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def insert_after_first_segment(jpeg: bytes, *segments: tuple[int, bytes]) -> bytes:
    """Add segments after JFIF's APP0 (or whatever comes first after SOI)."""
    at = 4 + struct.unpack(">H", jpeg[4:6])[0]
    return jpeg[:at] + b"".join(segment(*s) for s in segments) + jpeg[at:]


def test_jpeg_is_the_same_file_as_without_its_metadata():
    dirty = photo("JPEG")
    clean = photo("JPEG", metadata=False)
    markers = [marker for marker, _ in jpeg_segments(dirty)]
    assert 0xE1 in markers and 0xFE in markers  # EXIF/XMP and the comment are there
    stripped = strip_metadata_bytes(dirty, "JPEG")
    assert stripped == clean
    assert_no_metadata(stripped)
    assert Image.open(io.BytesIO(stripped)).info["icc_profile"] == P3_PROFILE
    assert pixels(stripped) == pixels(dirty)


def test_jpeg_keeps_an_allow_list_of_segments_only():
    big_profile = P3_PROFILE + bytes(100_000)  # needs two APP2 segments
    big_profile = struct.pack(">I", len(big_profile)) + big_profile[4:]
    clean = photo("JPEG", icc=big_profile, metadata=False)
    adobe = b"Adobe\0\x64\0\0\0\0\x01"
    dirty = insert_after_first_segment(
        photo("JPEG", icc=big_profile),
        (0xE1, b"http://ns.adobe.com/xmp/extension/\0" + b"0" * 40 + b"xmp-secret"),
        (0xED, b"Photoshop 3.0\x008BIM\x04\x04\0\0\0\0\0\x0biptc-secret"),
        (0xEB, b"JP\0\0\0\0\0\x01jumbc2pa-secret"),  # C2PA content credentials
        (0xEC, b"Ducky\0\x01\0\x04comment-secret"),
        (0xE6, b"GoPro\0Jane Photographer"),
        (0xE2, b"MPF\0II*\0"),  # a Multi-Picture index, pointing past EOI
        (0xE0, b"JFXX\0\x10thumbnail"),
        (0xFE, b"comment-secret"),
        (0xEE, adobe),
    )
    dirty += b"\xff\xd8 a preview with its own EXIF: trailer-secret \xff\xd9"
    stripped = strip_metadata_bytes(dirty, "JPEG")
    assert_no_metadata(stripped)
    kept = jpeg_segments(stripped)
    assert sorted(m for m, _ in kept if 0xE0 <= m <= 0xEF) == [0xE0, 0xE2, 0xE2, 0xEE]
    assert (0xEE, adobe) in kept
    assert Image.open(io.BytesIO(stripped)).info["icc_profile"] == big_profile
    assert jpeg_scan_data(stripped) == jpeg_scan_data(clean)
    assert stripped.endswith(b"\xff\xd9") and b"trailer-secret" not in stripped


def test_jfif_thumbnail_is_dropped_but_its_header_kept():
    clean = photo("JPEG", metadata=False)
    (marker, jfif) = jpeg_segments(clean)[0]
    assert marker == 0xE0 and len(jfif) == 14
    thumb = jfif[:12] + b"\x02\x01" + b"\x10\x20\x30" * 2  # a 2×1 RGB thumbnail
    dirty = clean[:4] + struct.pack(">H", len(thumb) + 2) + thumb + clean[4 + 2 + 14 :]
    assert strip_metadata_bytes(dirty, "JPEG") == clean


def test_progressive_jpeg_with_restarts_metadata_between_scans_and_fill_bytes():
    dirty, clean = progressive_jpeg_with_metadata_between_scans()
    assert clean.count(b"\xff\xda") > 3  # several scans
    assert any(bytes((0xFF, rst)) in jpeg_scan_data(clean) for rst in range(0xD0, 0xD8))
    assert pixels(dirty) == pixels(clean)  # Pillow reads it as the same picture
    assert strip_metadata_bytes(dirty, "JPEG") == clean


def test_jpeg_with_tem_marker_keeps_it():
    clean = photo("JPEG", metadata=False)
    dirty = clean[:2] + b"\xff\x01" + clean[2:]
    assert strip_metadata_bytes(dirty, "JPEG") == dirty


# -- PNG -------------------------------------------------------------------------------------------


def test_png_is_the_same_file_as_without_its_metadata():
    dirty = photo("PNG")
    kinds = [kind for kind, _ in png_chunks(dirty)]
    assert {b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"} <= set(kinds)
    stripped = strip_metadata_bytes(dirty, "PNG")
    assert stripped == photo("PNG", metadata=False)
    assert_no_metadata(stripped)
    assert Image.open(io.BytesIO(stripped)).info["icc_profile"] == P3_PROFILE
    assert pixels(stripped) == pixels(dirty)


def test_png_keeps_an_allow_list_of_chunks_across_several_idats():
    image = picture((800, 600))
    out = io.BytesIO()
    image.save(out, "PNG", icc_profile=P3_PROFILE, dpi=(300, 300))
    clean = out.getvalue()
    chunks = png_chunks(clean)
    assert [k for k, _ in chunks].count(b"IDAT") > 1
    private = [
        png_chunk(b"tEXt", b"Comment\0comment-secret"),
        png_chunk(b"prVt", b"Jane Photographer"),  # a private chunk
        png_chunk(b"iDOT", b"\0" * 28),  # Apple's: offsets that stripping would make wrong
        png_chunk(b"caBX", b"c2pa-secret"),  # C2PA
        png_chunk(b"eXIf", b"MM\0*Jane Photographer"),
    ]
    header_end = 8 + 25  # signature and IHDR
    first_idat = clean.index(b"IDAT") - 4
    dirty = (
        clean[:header_end]
        + private[0]
        + clean[header_end:first_idat]
        + b"".join(private[1:])
        + clean[first_idat:-12]
        + png_chunk(b"tEXt", b"Author\0Jane Photographer")
        + clean[-12:]
        + b"trailer-secret"
    )
    stripped = strip_metadata_bytes(dirty, "PNG")
    assert stripped == clean
    assert {k for k, _ in png_chunks(stripped)} == {b"IHDR", b"iCCP", b"pHYs", b"IDAT", b"IEND"}


def test_png_with_palette_transparency_and_gamma_keeps_them():
    image = picture((64, 64)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    info = png_text_chunks()
    info.add(b"gAMA", struct.pack(">I", 45455))
    out = io.BytesIO()
    image.save(out, "PNG", transparency=3, pnginfo=info)
    stripped = strip_metadata_bytes(out.getvalue(), "PNG")
    kinds = [k for k, _ in png_chunks(stripped)]
    assert kinds == [b"IHDR", b"gAMA", b"PLTE", b"tRNS", b"IDAT", b"IEND"]
    assert_no_metadata(stripped)
    assert pixels(stripped) == pixels(out.getvalue())


# -- WebP ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [{}, {"lossless": True}, {"mode": "RGBA"}, {"mode": "RGBA", "lossless": True}],
    ids=["lossy", "lossless", "lossy-alpha", "lossless-alpha"],
)
def test_webp_is_the_same_file_as_without_its_metadata(options):
    dirty = photo("WEBP", **options)
    flags = webp_chunks(dirty)[0][1][0]
    assert flags & 0x08 and flags & 0x04  # EXIF and XMP announced
    stripped = strip_metadata_bytes(dirty, "WEBP")
    assert stripped == photo("WEBP", metadata=False, **options)
    vp8x = webp_chunks(stripped)[0]
    assert vp8x[0] == b"VP8X" and not vp8x[1][0] & 0x0C and vp8x[1][0] & 0x20  # ICC still
    assert_no_metadata(stripped)
    assert Image.open(io.BytesIO(stripped)).info["icc_profile"] == P3_PROFILE
    assert pixels(stripped) == pixels(dirty)
    assert pixel_data(stripped) == pixel_data(dirty)


def test_animated_webp_keeps_its_frames():
    frames = [picture((64, 48)), picture((64, 48)).rotate(180)]
    out = io.BytesIO()
    frames[0].save(
        out, "WEBP", save_all=True, append_images=frames[1:], exif=private_exif(), xmp=XMP
    )
    stripped = strip_metadata_bytes(out.getvalue(), "WEBP")
    assert_no_metadata(stripped)
    kinds = [k for k, _ in webp_chunks(stripped)]
    assert kinds == [b"VP8X", b"ANIM", b"ANMF", b"ANMF"]
    assert pixel_data(stripped) == pixel_data(out.getvalue())
    assert Image.open(io.BytesIO(stripped)).n_frames == 2


def test_webp_drops_odd_sized_and_unknown_chunks_and_what_follows_the_riff():
    clean = photo("WEBP", metadata=False)
    chunks = [webp_chunk(kind, data) for kind, data in webp_chunks(clean)]
    vp8x = bytearray(webp_chunks(clean)[0][1])
    vp8x[0] |= 0x08 | 0x04
    dirty = webp_file(
        [
            webp_chunk(b"VP8X", bytes(vp8x)),
            *chunks[1:],
            webp_chunk(b"EXIF", b"MM\0*Jane Photographer"),  # odd size: padded
            webp_chunk(b"XMP ", XMP + b"!"),
            webp_chunk(b"JUNK", b"c2pa-secret"),
        ]
    )
    stripped = strip_metadata_bytes(dirty + b"trailer-secret", "WEBP")
    assert stripped == clean


# -- streaming -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_short_reads_give_the_same_file_in_pieces_never_the_whole(fmt):
    dirty = photo(fmt, (900, 700))
    assert len(dirty) > 3 * 1000
    stream = ShortReads(dirty)
    out = io.BytesIO()
    strip_metadata(stream, out, fmt)
    assert out.getvalue() == strip_metadata_bytes(dirty, fmt)
    # The file is read in pieces: the stripper never asks for all of it at once.
    assert stream.asked and all(size == PIECE for size in stream.asked)


def progressive_jpeg_with_metadata_between_scans() -> tuple[bytes, bytes]:
    """(with metadata, without): a progressive JPEG with restart markers and, between two
    scans, fill bytes, a comment and an EXIF segment."""
    clean = photo("JPEG", (400, 300), metadata=False, progressive=True, restart_marker_blocks=2)
    first_scan = clean.index(b"\xff\xda")
    # In entropy-coded data 0xFF is followed by 0x00 or RSTn only: this is the next scan.
    second = clean.index(b"\xff\xda", first_scan + 2)
    between = (
        b"\xff\xff"  # fill bytes before a marker
        + segment(0xFE, b"comment-secret")
        + segment(0xE1, b"Exif\0\0MM\0*Jane Photographer")
        + b"\xff\xff"
    )
    return clean[:second] + between + clean[second:], clean


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 1000])
def test_any_piece_size_gives_the_same_file(monkeypatch, piece):
    # Pieces of one byte split the file everywhere: an 0xFF and the byte that tells a stuffed
    # 0xFF, a restart or a marker apart, a chunk header, a length, a CRC.
    dirty_jpeg, clean_jpeg = progressive_jpeg_with_metadata_between_scans()
    files = [("JPEG", dirty_jpeg, clean_jpeg)]
    files += [(fmt, photo(fmt), photo(fmt, metadata=False)) for fmt in ("JPEG", "PNG", "WEBP")]
    monkeypatch.setattr(image_metadata, "PIECE", piece)
    for fmt, dirty, clean in files:
        assert strip_metadata_bytes(dirty, fmt) == clean, fmt


def test_a_big_png_chunk_is_copied_in_pieces(monkeypatch):
    monkeypatch.setattr(image_metadata, "PIECE", 4096)
    image = Image.effect_noise((700, 700), 100)
    out = io.BytesIO()
    image.save(out, "PNG", pnginfo=png_text_chunks())
    dirty = out.getvalue()
    idat = max(len(data) for kind, data in png_chunks(dirty) if kind == b"IDAT")
    assert idat > 10 * 4096

    class Writes(io.BytesIO):
        largest = 0

        def write(self, data):
            self.largest = max(self.largest, len(data))
            return super().write(data)

    stripped = Writes()
    strip_metadata(io.BytesIO(dirty), stripped, "PNG")
    assert stripped.largest <= 4096
    assert pixels(stripped.getvalue()) == pixels(dirty)


# -- damaged and odd input: a clear error, never a loop or a broken copy --------------------------

JPEG = photo("JPEG", metadata=False)
SOS_AT = JPEG.index(b"\xff\xda")


def jpeg_with(*segments: bytes) -> bytes:
    return JPEG[:2] + b"".join(segments) + JPEG[2:]


DAMAGED_JPEGS = {
    "empty": b"",
    "missing SOI": JPEG[2:],
    "a PNG": photo("PNG", metadata=False),
    "only SOI": b"\xff\xd8",
    "truncated segment": JPEG[: SOS_AT - 30],
    "truncated length": JPEG[:20] + b"\xff\xdb\x00",
    "truncated marker": JPEG[:20] + b"\xff",
    "bogus length 0": jpeg_with(b"\xff\xe1\x00\x00Exif"),
    "bogus length 1": jpeg_with(b"\xff\xfe\x00\x01"),
    "huge declared length": jpeg_with(b"\xff\xe1\xff\xff" + b"Exif\0\0" + bytes(100))[:300],
    "length past the end": JPEG[:-2] + b"\xff\xfe\x40\x00short",
    "scan without end": JPEG[:-2],
    "end inside a fill run": JPEG[:SOS_AT] + b"\xff" * 5000,
    "fill bytes to the end": b"\xff\xd8" + b"\xff" * 100_000,
    "garbage between segments": JPEG[:20] + b"\x00\x17" + JPEG[20:],
    "EOI before any scan": JPEG[:SOS_AT] + b"\xff\xd9",
    "scan before frame": b"\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00\x00\xff\xd9",
    "second SOI": jpeg_with(b"\xff\xd8"),
    "restart outside a scan": jpeg_with(b"\xff\xd3"),
    "stuffed byte outside a scan": jpeg_with(b"\xff\x00"),
    "reserved JPG marker": jpeg_with(b"\xff\xc8\x00\x04\x00\x00"),
    "JPEG-LS marker": jpeg_with(b"\xff\xf7\x00\x04\x00\x00"),
}


@pytest.mark.parametrize("data", DAMAGED_JPEGS.values(), ids=DAMAGED_JPEGS.keys())
def test_damaged_jpeg_is_refused_clearly(data):
    with within(5), pytest.raises(MetadataError, match=r"^JPEG: .+ \(at byte \d+\)$"):
        strip_metadata_bytes(data, "JPEG")


PNG = photo("PNG", metadata=False)
IDAT_AT = PNG.index(b"IDAT") - 4


def png_before_idat(chunk: bytes) -> bytes:
    return PNG[:IDAT_AT] + chunk + PNG[IDAT_AT:]


def bad_crc(data: bytes) -> bytes:
    return data[:-4] + bytes(b ^ 0xFF for b in data[-4:])


DAMAGED_PNGS = {
    "empty": b"",
    "no signature": PNG[8:],
    "a JPEG": JPEG,
    "truncated chunk": PNG[: IDAT_AT + 20],
    "no IEND": PNG[:-12],
    "length over 2^31-1": png_before_idat(b"\xff\xff\xff\xfftEXt" + b"a\0b" * 10),
    "huge declared length": png_before_idat(b"\x7f\xff\xff\xfftEXtComment\0x"),
    "kept chunk past the end": png_before_idat(b"\x7f\xff\xff\xffgAMA\0\0\0\0"),
    "bad CRC in IDAT": PNG[:IDAT_AT] + bad_crc(PNG[IDAT_AT:-12]) + PNG[-12:],
    "bad CRC in iCCP": bad_crc(PNG[:IDAT_AT]) + PNG[IDAT_AT:],
    "unknown critical chunk": png_before_idat(png_chunk(b"ABCD", b"x")),
    "chunk type not letters": png_before_idat(png_chunk(b"t3Xt", b"x")),
    "first chunk not IHDR": PNG[:8] + png_chunk(b"tEXt", b"a\0b") + PNG[8:],
    "IEND before IDAT": PNG[:IDAT_AT] + PNG[-12:],
}


@pytest.mark.parametrize("data", DAMAGED_PNGS.values(), ids=DAMAGED_PNGS.keys())
def test_damaged_png_is_refused_clearly(data):
    with within(5), pytest.raises(MetadataError, match=r"^PNG: .+ \(at byte \d+\)$"):
        strip_metadata_bytes(data, "PNG")


WEBP = photo("WEBP", metadata=False)
WEBP_CHUNKS = [webp_chunk(kind, data) for kind, data in webp_chunks(WEBP)]
DAMAGED_WEBPS = {
    "empty": b"",
    "not RIFF": b"RIFX" + WEBP[4:],
    "RIFF but not WEBP": WEBP[:8] + b"WAVE" + WEBP[12:],
    "RIFF size past the end": WEBP[:4] + struct.pack("<I", len(WEBP) + 100) + WEBP[8:],
    "RIFF size with no chunk": b"RIFF\x04\0\0\0WEBP",
    "RIFF size inside a chunk header": webp_file([*WEBP_CHUNKS, b"EXIF"]),
    "chunk past the RIFF size": webp_file([b"VP8 \xff\xff\xff\x7f" + WEBP_CHUNKS[-1][8:]]),
    "VP8X of a wrong size": webp_file([webp_chunk(b"VP8X", bytes(12)), *WEBP_CHUNKS[1:]]),
    "VP8X not first": webp_file([*WEBP_CHUNKS[1:], WEBP_CHUNKS[0]]),
    "no image chunk": webp_file([WEBP_CHUNKS[0], webp_chunk(b"EXIF", b"MM\0*")]),
    "truncated": WEBP[: len(WEBP) // 2],
}


@pytest.mark.parametrize("data", DAMAGED_WEBPS.values(), ids=DAMAGED_WEBPS.keys())
def test_damaged_webp_is_refused_clearly(data):
    with within(5), pytest.raises(MetadataError, match=r"^WEBP: .+ \(at byte \d+\)$"):
        strip_metadata_bytes(data, "WEBP")


def test_a_format_it_does_not_know_is_refused():
    data = io.BytesIO()
    picture().save(data, "GIF")
    with pytest.raises(MetadataError, match="GIF"):
        strip_metadata_bytes(data.getvalue(), "GIF")


# -- ICC profiles ----------------------------------------------------------------------------------


def test_icc_colour_space_reads_the_profile_header():
    assert icc_colour_space(P3_PROFILE) == "RGB"
    assert icc_colour_space(GREY_PROFILE) == "GRAY"
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert icc_colour_space(srgb) == "RGB"


@pytest.mark.parametrize(
    "profile",
    [
        None,
        b"",
        b"not a profile" * 20,
        P3_PROFILE[:100],  # shorter than a header
        P3_PROFILE[:200],  # shorter than its declared size
        P3_PROFILE[:36] + b"xxxx" + P3_PROFILE[40:],  # no "acsp" signature
    ],
)
def test_icc_colour_space_of_something_else_is_none(profile):
    assert icc_colour_space(profile) is None
