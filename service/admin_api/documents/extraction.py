"""What a file is, decided by its bytes (never its name or the client's Content-Type), and its text.

Supported: plain text and Markdown (UTF-8 or UTF-16 with a BOM), HTML (text only: no script or style
content), PDF (pypdf) and DOCX (python-docx). Anything else is `UnsupportedType` (415) at upload.
Extraction runs in the ingestion worker and fails with `ExtractionFailed`, whose words are for the user.
Bombs are bounded before any unpacking: a DOCX's declared unpacked size (zipfile never inflates past
it), a PDF's page count, and the text extracted in total.
"""

from __future__ import annotations

import codecs
import io
import logging
import re
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import BinaryIO

log = logging.getLogger(__name__)

TEXT = "text/plain"
MARKDOWN = "text/markdown"
HTML = "text/html"
PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

SNIFF_BYTES = 64 * 1024
MAX_ZIP_ENTRIES = 10_000
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
# The tags that make a file HTML by its first bytes, as browsers sniff it (WHATWG MIME Sniffing, "text/html"):
# a fragment such as "<div>...<script>" is HTML too, so its script and style never reach the index as text.
_HTML_START = re.compile(
    rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|script|iframe|h1|div|font|table|a|style|title|b|body|br|p)[\s>]",
    re.IGNORECASE | re.DOTALL,
)
_MARKDOWN = re.compile(r"^(#{1,6}\s|```|\s{0,3}[-*+]\s|\s{0,3}\d+\.\s|>\s)|\[[^\]\n]+\]\([^)\s]+\)", re.MULTILINE)


class UnsupportedType(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ExtractionFailed(Exception):
    """The document cannot be used; `reason` is shown to the user as the document's error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    max_pages: int
    max_unpacked_bytes: int
    max_chars: int


SUPPORTED = "plain text, Markdown, HTML, PDF or DOCX"


def sniff(file: BinaryIO) -> str:
    """The content type of a seekable file, from its bytes; raises UnsupportedType."""
    file.seek(0)
    head = file.read(SNIFF_BYTES)
    file.seek(0)
    if head.startswith(b"%PDF-") or b"%PDF-" in head[:1024]:
        return PDF
    if head.startswith(b"PK\x03\x04"):
        return _sniff_zip(file)
    text = _decode_head(head)
    if text is None:
        raise UnsupportedType(f"This file is not a supported type ({SUPPORTED}).")
    if _HTML_START.match(head.lstrip(codecs.BOM_UTF8)) or _HTML_START.match(text.encode()):
        return HTML
    return MARKDOWN if _MARKDOWN.search(text) else TEXT


def _sniff_zip(file: BinaryIO) -> str:
    try:
        with zipfile.ZipFile(file) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        raise UnsupportedType("This file looks like a damaged ZIP archive, not a DOCX document.") from None
    finally:
        file.seek(0)
    if "word/document.xml" in names and "[Content_Types].xml" in names:
        return DOCX
    raise UnsupportedType(f"ZIP archives are not supported ({SUPPORTED}).")


def _decode_head(head: bytes) -> str | None:
    """The beginning of a text file, or None for bytes that are not text."""
    for bom, encoding in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            decoder = codecs.getincrementaldecoder(encoding)("strict")
            try:
                return decoder.decode(head[len(bom) :], final=False)
            except UnicodeDecodeError:
                return None
    if b"\x00" in head:
        return None
    decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
    try:
        text = decoder.decode(head, final=False)  # not final: the head may end inside a character
    except UnicodeDecodeError:
        return None
    if len(_CONTROL.findall(text)) > max(1, len(text) // 100):
        return None
    return text


def extract(data: bytes, content_type: str, limits: Limits) -> str:
    """The document's text; raises ExtractionFailed with a reason for the user."""
    if not data:
        raise ExtractionFailed("The file is empty.")
    if content_type in (TEXT, MARKDOWN):
        text = _decode_text(data)
    elif content_type == HTML:
        text = html_text(data.decode("utf-8-sig", errors="replace"))
    elif content_type == PDF:
        text = _pdf_text(data, limits)
    elif content_type == DOCX:
        text = _docx_text(data, limits)
    else:
        raise ExtractionFailed("This file type is not supported.")
    text = text.replace("\x00", "").strip()
    if len(text) > limits.max_chars:
        raise ExtractionFailed(f"The document has more than {limits.max_chars:,} characters of text; split it up.")
    if not text:
        raise ExtractionFailed("No text was found in this file (a scanned PDF without a text layer has none).")
    return text


def _decode_text(data: bytes) -> str:
    for bom, encoding in ((codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                raise ExtractionFailed("The file is not valid UTF-16 text.") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ExtractionFailed("The file is not valid UTF-8 text (save it as UTF-8 and upload it again).") from None


class _TextOnly(HTMLParser):
    """The visible text of a page: no script, style or template content; block elements end lines."""

    SKIP = frozenset({"script", "style", "template", "noscript", "svg", "head", "iframe", "object"})
    BLOCKS = frozenset(
        {"p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "header", "footer", "pre",
         "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "dd", "dt", "title", "main", "nav", "aside"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self.SKIP:
            self._skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        if tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_text(markup: str) -> str:
    parser = _TextOnly()
    parser.feed(markup)
    parser.close()
    paragraphs = (" ".join(block.split()) for block in "".join(parser.parts).split("\n\n"))
    return "\n\n".join(paragraph for paragraph in paragraphs if paragraph)


def _pdf_text(data: bytes, limits: Limits) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    unreadable = "The PDF could not be read; it may be damaged. Try saving it again as PDF."
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractionFailed("The PDF is password-protected; upload it without the password.")
        pages = len(reader.pages)
        if pages > limits.max_pages:
            raise ExtractionFailed(f"The PDF has {pages:,} pages; at most {limits.max_pages:,} are accepted.")
        texts: list[str] = []
        total = 0
        for page in reader.pages:
            text = page.extract_text() or ""
            total += len(text)
            if total > limits.max_chars:
                raise ExtractionFailed(f"The document has more than {limits.max_chars:,} characters of text; split it up.")
            texts.append(text)
    except ExtractionFailed:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError,
            RecursionError, NotImplementedError, AssertionError, ZeroDivisionError) as error:
        # pypdf raises many kinds of errors on damaged files; none of them is ours to pass on.
        log.info("pdf unreadable", extra={"error_type": type(error).__name__})
        raise ExtractionFailed(unreadable) from None
    if reader.is_encrypted:
        log.debug("pdf was encrypted with an empty password")
    return "\n\n".join(texts)


def _docx_text(data: bytes, limits: Limits) -> str:
    import docx

    damaged = "The DOCX file could not be read; it may be damaged. Try saving it again in Word."
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise ExtractionFailed(damaged) from None
    unpacked = sum(entry.file_size for entry in entries)
    if len(entries) > MAX_ZIP_ENTRIES or unpacked > limits.max_unpacked_bytes:
        raise ExtractionFailed(
            f"The DOCX file unpacks to more than {limits.max_unpacked_bytes // (1024 * 1024)} MiB; "
            "it is refused as a possible ZIP bomb."
        )
    try:
        document = docx.Document(io.BytesIO(data))
        blocks = [paragraph.text for paragraph in document.paragraphs]
        for table in document.tables:
            for row in table.rows:
                blocks.append(" | ".join(cell.text for cell in row.cells))
    except Exception as error:  # python-docx and lxml raise many kinds on damaged files
        log.info("docx unreadable", extra={"error_type": type(error).__name__})
        raise ExtractionFailed(damaged) from None
    return "\n\n".join(block for block in blocks if block.strip())
