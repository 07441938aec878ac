"""Bad files get a clear status, never a 500: refused at upload (415, 413, 422, 400) or `failed` with a reason."""

from __future__ import annotations

import os

from tests.service.documents import files
from tests.service.documents.conftest import DOCUMENTS


async def test_binary_renamed_txt_is_415(docs):
    response = await docs.upload(docs.alice, "photo.txt", bytes(range(256)) * 40)
    assert response.status_code == 415
    assert "not a supported type" in response.json()["detail"]


async def test_plain_zip_is_415(docs):
    response = await docs.upload(docs.alice, "archive.docx", files.plain_zip())
    assert response.status_code == 415
    assert "ZIP" in response.json()["detail"]


async def test_empty_file_is_422(docs):
    response = await docs.upload(docs.alice, "empty.txt", b"")
    assert response.status_code == 422
    assert response.json()["detail"] == "The file is empty."
    assert (await docs.alice.get(DOCUMENTS)).json()["items"] == []


async def test_whitespace_only_text_fails_with_a_reason(docs):
    uploaded = await docs.upload_ok(docs.alice, "blank.txt", b"   \n\n  \n")
    done = await docs.wait_done(docs.alice, uploaded["document_id"])
    assert done["status"] == "failed"
    assert "No text was found" in done["error"]


async def test_corrupt_pdf_fails_with_a_reason(docs):
    uploaded = await docs.upload_ok(docs.alice, "broken.pdf", b"%PDF-1.7\n" + os.urandom(4000))
    assert uploaded["content_type"] == "application/pdf"
    done = await docs.wait_done(docs.alice, uploaded["document_id"])
    assert done["status"] == "failed"
    assert "could not be read" in done["error"] or "No text was found" in done["error"]


async def test_truncated_pdf_fails_with_a_reason(docs):
    data = files.pdf(["A page that will be cut in half."])
    uploaded = await docs.upload_ok(docs.alice, "cut.pdf", data[: len(data) // 2])
    done = await docs.wait_done(docs.alice, uploaded["document_id"])
    assert done["status"] == "failed" and done["error"]


async def test_docx_bomb_fails_before_unpacking(open_docs):
    async with open_docs(max_unpacked_bytes=1024 * 1024) as docs:
        bomb = files.docx_bomb(8 * 1024 * 1024)
        assert len(bomb) < 100_000
        uploaded = await docs.upload_ok(docs.alice, "bomb.docx", bomb)
        done = await docs.wait_done(docs.alice, uploaded["document_id"])
        assert done["status"] == "failed"
        assert "ZIP bomb" in done["error"]


async def test_too_many_pages_fails(open_docs):
    async with open_docs(max_document_pages=2) as docs:
        uploaded = await docs.upload_ok(docs.alice, "long.pdf", files.pdf(["one"], ["two"], ["three"]))
        done = await docs.wait_done(docs.alice, uploaded["document_id"])
        assert done["status"] == "failed"
        assert "3 pages" in done["error"] and "at most 2" in done["error"]


async def test_invalid_utf8_text_fails_with_a_reason(docs):
    data = ("Plain words " * 6000).encode() + b"\xff\xfe broken at the end"  # past the sniffed head
    uploaded = await docs.upload_ok(docs.alice, "latin.txt", data)
    done = await docs.wait_done(docs.alice, uploaded["document_id"])
    assert done["status"] == "failed" and "UTF-8" in done["error"]


async def test_over_the_limit_is_413_before_the_body_is_read(open_docs):
    async with open_docs(max_upload_bytes=64 * 1024) as docs:
        too_big = await docs.upload(docs.alice, "big.txt", b"a" * (64 * 1024 + 1))
        assert too_big.status_code == 413
        way_too_big = await docs.upload(docs.alice, "huge.txt", b"a" * (512 * 1024))
        assert way_too_big.status_code == 413  # refused on Content-Length by the middleware

        sent = 0

        async def endless():  # no Content-Length: chunked, refused once the stream passes the limit
            nonlocal sent
            yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.txt\"\r\n\r\n"
            for _ in range(10_000):
                sent += 16 * 1024
                yield b"a" * (16 * 1024)

        response = await docs.alice.post(
            DOCUMENTS, content=endless(), headers={"Content-Type": "multipart/form-data; boundary=b"}
        )
        assert response.status_code == 413
        assert sent < 10_000 * 16 * 1024  # stopped long before the end
        assert (await docs.alice.get(DOCUMENTS)).json()["items"] == []


async def test_malformed_multipart_is_4xx(docs):
    no_boundary = await docs.alice.post(DOCUMENTS, content=b"abc", headers={"Content-Type": "multipart/form-data"})
    assert no_boundary.status_code == 400
    garbage = await docs.alice.post(
        DOCUMENTS, content=b"--x\r\nnot a header\r\n\r\nzz", headers={"Content-Type": "multipart/form-data; boundary=x"}
    )
    assert 400 <= garbage.status_code < 500
    no_file = await docs.alice.post(DOCUMENTS, files={"other": ("a.txt", b"hello", "text/plain")})
    assert no_file.status_code == 422
    as_json = await docs.alice.post(DOCUMENTS, json={"file": "hello"})
    assert as_json.status_code == 415


async def test_cross_site_upload_is_refused(docs):
    response = await docs.alice.post(
        DOCUMENTS,
        files={"file": ("a.txt", b"hello there", "text/plain")},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == 403
    assert (await docs.alice.get(DOCUMENTS)).json()["items"] == []
    # Multipart is allowed on the upload route only.
    other = await docs.alice.post("/api/v1/history/list", files={"file": ("a.txt", b"x", "text/plain")})
    assert other.status_code == 415
