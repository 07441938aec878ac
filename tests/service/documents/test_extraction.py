"""Sniffing by content and extraction, on files made here."""

from __future__ import annotations

import codecs
import io

import pytest

from admin_api.documents import extraction
from admin_api.documents.extraction import ExtractionFailed, Limits, UnsupportedType, extract, sniff
from tests.service.documents import files

LIMITS = Limits(max_pages=10, max_unpacked_bytes=1024 * 1024, max_chars=100_000)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"Just some words.\nAnd more.", extraction.TEXT),
        (codecs.BOM_UTF8 + "Größe".encode(), extraction.TEXT),
        (codecs.BOM_UTF16_LE + "Hello there".encode("utf-16-le"), extraction.TEXT),
        (b"# Heading\n\nSome *text*.", extraction.MARKDOWN),
        (b"See [the docs](https://example.com/x) for more.", extraction.MARKDOWN),
        (b"  <!DOCTYPE html><html><body>x</body></html>", extraction.HTML),
        (b"<!-- a comment --><html lang=en><p>x", extraction.HTML),
        (b"<div><script>steal()</script><p>A fragment</p></div>", extraction.HTML),
        (b"\n<P>Upper case</P>", extraction.HTML),
        (b"<table><tr><td>x</td></tr></table>", extraction.HTML),
        (b"<note>not an HTML tag</note>", extraction.TEXT),
        (b"<abbr>not one either</abbr>", extraction.TEXT),
        (files.pdf(["x"]), extraction.PDF),
        (files.docx_file("x"), extraction.DOCX),
    ],
)
def test_sniffed_by_content(data, expected):
    assert sniff(io.BytesIO(data)) == expected


@pytest.mark.parametrize(
    "data",
    [
        bytes(range(256)) * 4,  # binary
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 100,
        b"GIF89a\x01\x00\x01\x00\x80\x00\x00",
        files.plain_zip(),
        b"PK\x03\x04 not really a zip",
        "é".encode("latin-1") * 100,  # not UTF-8
    ],
)
def test_other_types_are_unsupported(data):
    with pytest.raises(UnsupportedType):
        sniff(io.BytesIO(data))


def test_a_multibyte_character_cut_by_the_sniff_window_is_still_text():
    data = b"a" * (extraction.SNIFF_BYTES - 1) + "é".encode()
    assert sniff(io.BytesIO(data)) == extraction.TEXT


def test_an_html_fragment_is_read_as_html_without_its_script():
    fragment = b"<div><script>steal(document.cookie)</script><p>Only this</p></div>"
    assert extract(fragment, sniff(io.BytesIO(fragment)), LIMITS) == "Only this"


def test_html_text_skips_scripts_styles_and_keeps_blocks():
    html = "<html><head><style>p{}</style></head><body><script>alert(1)</script><p>One &amp; two</p><div>Three</div></body></html>"
    assert extraction.html_text(html) == "One & two\n\nThree"


def test_pdf_text_and_limits():
    assert "second page" in extract(files.pdf(["first page"], ["second page"]), extraction.PDF, LIMITS)
    with pytest.raises(ExtractionFailed, match="at most 1"):
        extract(files.pdf(["a"], ["b"]), extraction.PDF, Limits(1, 1024 * 1024, 100_000))
    with pytest.raises(ExtractionFailed, match="could not be read"):
        extract(b"%PDF-1.4\n garbage garbage", extraction.PDF, LIMITS)


def test_too_much_text_fails():
    with pytest.raises(ExtractionFailed, match="more than 1,000 characters"):
        extract(b"word " * 1000, extraction.TEXT, Limits(10, 1024 * 1024, 1000))


def test_docx_bomb_is_refused_by_its_declared_size():
    with pytest.raises(ExtractionFailed, match="ZIP bomb"):
        extract(files.docx_bomb(2 * 1024 * 1024), extraction.DOCX, LIMITS)
