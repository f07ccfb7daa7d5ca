"""The PMC Cloud bucket ``pmc-oa-opendata``: version listings, metadata JSON, objects.

The layout comes from PMC's page "Accessing PMC Article Datasets Using Amazon Web Services"
(pmc.ncbi.nlm.nih.gov/tools/pmcaws/), the bucket's own ``README.txt`` and public clients of the
2026 layout (listing, metadata and ``s3://`` URL handling read, not copied):

- One folder per article *version*: ``PMC<id>.<version>/`` holds ``PMC<id>.<version>.xml``
  (JATS), ``.txt``, ``.pdf`` where the article has one, and its media files (figure images
  such as ``<name>.f001.jpg``, supplements). An article may have several versions (an author
  manuscript and the published version, corrections); a higher number is not always open access.
- Per-version metadata ``metadata/PMC<id>.<version>.json``: ``pmcid``, ``version``, ``pmid``,
  ``doi``, ``is_pmc_openaccess``, ``is_manuscript``, ``is_retracted``, ``license_code`` (a
  Creative Commons code such as ``CC BY``, ``CC0``, ``CC BY-NC``; ``TDM`` for text and data
  mining only; null when the article carries no machine-readable licence) and ``xml_url`` /
  ``text_url`` / ``pdf_url`` / ``media_urls`` as ``s3://pmc-oa-opendata/<key>?md5=..`` (read
  here as ``<bucket url>/<key>``, the md5 checked).
- The versions of an article: S3 ListObjectsV2, ``?list-type=2&prefix=PMC<id>.&delimiter=/``,
  whose ``CommonPrefixes`` are the version folders.

S3 answers a refused request with 403 (``AccessDenied``, also what a blocking proxy sends) and
an overloaded one with 503 ``SlowDown`` (retried with backoff by ``NcbiHttp``).
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
import xml.etree.ElementTree as ET
from email.message import Message

from medsim.pubmed.http import BadResponse, Rejected

__all__ = [
    "BUCKET",
    "CLOUD_URL",
    "ChecksumMismatch",
    "check_metadata",
    "check_object",
    "check_versions",
    "is_pdf",
    "object_key",
]

BUCKET = "pmc-oa-opendata"
CLOUD_URL = f"https://{BUCKET}.s3.amazonaws.com/"


class ChecksumMismatch(Rejected):
    """An object whose bytes do not match the md5 its metadata gives: most often metadata older
    than the object (NCBI replaced the file), so the caller reads the metadata again once."""


def is_pdf(head: bytes) -> bool:
    """Whether a body starts like a PDF (``%PDF-``, leading whitespace tolerated)."""
    return head[:1024].lstrip().startswith(b"%PDF-")


def object_key(url: str) -> tuple[str, str | None]:
    """``(key, md5)`` of a metadata URL ``s3://pmc-oa-opendata/<key>?md5=<hex>``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "s3" or parts.netloc != BUCKET or not parts.path.strip("/"):
        raise BadResponse(f"not an object of the {BUCKET} bucket: {url}")
    md5 = urllib.parse.parse_qs(parts.query).get("md5", [None])[0]
    return parts.path.lstrip("/"), md5


def check_versions(body: bytes, headers: Message) -> list[str]:
    """Version folders (``PMC1.2``) of a delimited S3 listing, oldest first."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise BadResponse(f"bucket listing is not XML: {exc}") from None
    if not root.tag.endswith("ListBucketResult"):
        raise BadResponse(f"bucket listing has root <{root.tag}>")
    folders = [
        el.text.strip().rstrip("/")
        for el in root.iter()
        if el.tag.endswith("Prefix") and el.text and el.text.strip().endswith("/")
    ]
    versioned = [f for f in folders if re.fullmatch(r"PMC\d+\.\d+", f)]
    return sorted(set(versioned), key=lambda f: int(f.rsplit(".", 1)[1]))


def check_metadata(body: bytes, headers: Message) -> dict:
    """A version's metadata JSON; a body that is no JSON object is damaged (retried)."""
    try:
        metadata = json.loads(body)
    except ValueError as exc:
        raise BadResponse(f"article metadata is not JSON: {exc}") from None
    if not isinstance(metadata, dict):
        raise BadResponse("article metadata is not a JSON object")
    return metadata


def check_object(md5: str | None, file_type: str):
    """The ``check`` of one object: its md5, and for ``xml``/``pdf`` that it is one."""

    def check(body: bytes, headers: Message) -> bytes:
        if md5 and hashlib.md5(body).hexdigest() != md5:
            raise ChecksumMismatch(f"md5 mismatch ({len(body)} bytes)")
        if file_type == "pdf" and not is_pdf(body):
            raise Rejected(f"not a pdf ({headers.get('Content-Type', 'unknown type')})")
        if file_type == "xml":
            try:
                root = ET.fromstring(body)
            except ET.ParseError as exc:
                raise BadResponse(f"JATS is not XML: {exc}") from None
            if root.tag.rsplit("}", 1)[-1] != "article":
                raise Rejected(f"JATS root is <{root.tag}>, not <article>")
        return body

    return check
