"""Full text of open-access articles from the PMC Cloud Service: JATS XML, figures, PDF, licence.

PMC retired its FTP service and the OA Web Service (``oa.fcgi``) in August 2026; full text is
served only by the PMC Cloud Service, the world-readable S3 bucket ``pmc-oa-opendata``, over
plain HTTPS without login. The layout used here comes from PMC's page "Accessing PMC Article
Datasets Using Amazon Web Services" (pmc.ncbi.nlm.nih.gov/tools/pmcaws/), the bucket's own
``README.txt`` (pmc-oa-opendata.s3.amazonaws.com/README.txt) and public clients of the 2026
layout (listing, metadata and ``s3://`` URL handling read, not copied):

- One folder per article *version*: ``PMC<id>.<version>/`` holds ``PMC<id>.<version>.xml``
  (JATS), ``.txt``, ``.pdf`` where the article has one, and its media files (figure images
  such as ``<name>.f001.jpg``, supplements).
- Per-version metadata ``metadata/PMC<id>.<version>.json``: ``pmcid``, ``version``, ``pmid``,
  ``doi``, ``is_pmc_openaccess``, ``is_manuscript``, ``is_retracted``, ``license_code``, and
  ``xml_url`` / ``text_url`` / ``pdf_url`` / ``media_urls`` as ``s3://pmc-oa-opendata/<key>?md5=..``
  (read here as ``<bucket url>/<key>``, the md5 checked).
- The versions of an article: S3 ListObjectsV2, ``?list-type=2&prefix=PMC<id>.&delimiter=/``,
  whose ``CommonPrefixes`` are the version folders. The highest version is taken (PMC notes a
  higher number is not always the version of record; the metadata of the chosen one is kept).
- PMCIDs missing from a PubMed record come from the ID Converter API
  (``pmc.ncbi.nlm.nih.gov/tools/idconv/api/v1/articles/``, ``idtype=pmid``, JSON ``records``
  with ``pmid``, ``pmcid``, ``requested-id``; at most 200 ids per request; the old
  ``/pmc/utils/idconv/v1.0/`` only redirects there).

An article not in the open-access subset, retracted, or with no version folder is kept without
full text, and a ``Skipped("pmc/<doc_id>", reason, detail)`` is yielded. Every outcome is
cached under ``<cache>/pmc/``: the files of an article version once all of them arrived, and a
failure marker (``<PMCID>.failed.json``) so a re-run does not ask again; ``MEDSIM_RETRY_FAILED=1``
asks again. ``$MEDSIM_PMC_CLOUD_URL`` replaces the bucket's URL (a mirror, the test fake) and
``$MEDSIM_PMC_URL`` PMC's site root (for the ID Converter).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path, PurePosixPath

from medsim.io import atomic_path
from medsim.names import SkipReason
from medsim.pubmed.http import (
    BadResponse,
    FetchError,
    NcbiHttp,
    RateLimiter,
    Rejected,
    StatusError,
    remember_failures,
)
from medsim.pubmed.raw import RawStore
from medsim.pubmed.records import Article, Skipped

__all__ = ["BUCKET", "CLOUD_URL", "PMC_URL", "FullText", "PmcClient", "is_pdf", "object_key"]

log = logging.getLogger(__name__)

BUCKET = "pmc-oa-opendata"
CLOUD_URL = f"https://{BUCKET}.s3.amazonaws.com/"
PMC_URL = "https://pmc.ncbi.nlm.nih.gov/"
IDCONV_PATH = "tools/idconv/api/v1/articles/"
IDCONV_BATCH = 200  # the converter's limit per request
# S3 serves far more than NCBI's 3-10 requests/s; a polite fixed pace of its own keeps full text
# from queueing behind E-utilities' limit (5 objects per article would triple a fetch's time).
BUCKET_RATE = 20.0
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".tif", ".tiff"})
_PMCID = re.compile(r"^PMC\d+$")


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


@dataclass
class FullText:
    """What the bucket holds for one article version, as files in the cache."""

    version: str  # e.g. "PMC1790863.1"
    license: str | None
    xml: Path
    media: list[Path] = field(default_factory=list)
    pdf: Path | None = None


def _check_idconv(body: bytes, headers: Message) -> dict[str, str]:
    try:
        answer = json.loads(body)
    except ValueError as exc:
        raise BadResponse(f"idconv answer is not JSON: {exc}") from None
    if not isinstance(answer, dict) or "records" not in answer:
        raise BadResponse("idconv answer has no records")
    return {
        str(rec["pmid"]): str(rec["pmcid"]).upper()
        for rec in answer["records"]
        if rec.get("pmid") and rec.get("pmcid")
    }


def _check_versions(body: bytes, headers: Message) -> list[str]:
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


def _check_metadata(body: bytes, headers: Message) -> dict:
    try:
        metadata = json.loads(body)
    except ValueError as exc:
        raise BadResponse(f"article metadata is not JSON: {exc}") from None
    if not isinstance(metadata, dict) or not metadata.get("xml_url"):
        raise BadResponse("article metadata has no xml_url")
    return metadata


def _checker(md5: str | None, kind: str):
    def check(body: bytes, headers: Message) -> bytes:
        if md5 and hashlib.md5(body).hexdigest() != md5:
            raise BadResponse(f"md5 mismatch ({len(body)} bytes)")
        if kind == "pdf" and not is_pdf(body):
            raise Rejected(f"not a pdf ({headers.get('Content-Type', 'unknown type')})")
        if kind == "xml":
            try:
                root = ET.fromstring(body)
            except ET.ParseError as exc:
                raise BadResponse(f"JATS is not XML: {exc}") from None
            if root.tag.rsplit("}", 1)[-1] != "article":
                raise Rejected(f"JATS root is <{root.tag}>, not <article>")
        return body

    return check


class PmcClient:
    """Finds and downloads open-access full text from the PMC Cloud bucket, with a cache."""

    def __init__(
        self,
        http: NcbiHttp,
        cache_dir: Path,
        max_bytes: int,
        cloud_url: str | None = None,
        pmc_url: str | None = None,
        idconv: bool = True,
        bucket_http: NcbiHttp | None = None,
    ) -> None:
        cloud = cloud_url or os.environ.get("MEDSIM_PMC_CLOUD_URL") or CLOUD_URL
        site = pmc_url or os.environ.get("MEDSIM_PMC_URL") or PMC_URL
        self.cloud_url = cloud.rstrip("/") + "/"
        self.idconv_url = site.rstrip("/") + "/" + IDCONV_PATH
        self.http = http  # NCBI's services (the ID Converter), under NCBI's rate limit
        self.bucket = bucket_http or NcbiHttp(
            http.cache,
            identity={},
            limiter=RateLimiter(BUCKET_RATE),
            retry=http.retry,
            sleep=http._sleep,
        )
        self.root = Path(cache_dir) / "pmc"
        self.max_bytes = max_bytes
        self.idconv = idconv

    # -- identifiers ---------------------------------------------------------------------
    def lookup_pmcids(self, pmids: Sequence[str]) -> dict[str, str]:
        """PMID -> PMCID from the ID Converter, for the PMIDs PMC knows."""
        found: dict[str, str] = {}
        for start in range(0, len(pmids), IDCONV_BATCH):
            batch = ",".join(pmids[start : start + IDCONV_BATCH])
            params = {"ids": batch, "idtype": "pmid", "format": "json"}
            try:
                found |= self.http.request(
                    "idconv", self.idconv_url, params, check=_check_idconv, ext="json"
                )
            except (FetchError, Rejected) as exc:  # full text is extra: never fail the fetch
                log.warning("PMC ID Converter failed (%s); those articles get no full text", exc)
        return found

    # -- cache -----------------------------------------------------------------------------
    def _failure_path(self, pmcid: str) -> Path:
        return self.root / f"{pmcid}.failed.json"

    def _remembered(self, pmcid: str) -> tuple[str, str] | None:
        if not remember_failures():
            return None
        try:
            saved = json.loads(self._failure_path(pmcid).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return saved["reason"], saved.get("detail", "")

    def _remember(self, pmcid: str, reason: str, detail: str) -> None:
        with atomic_path(self._failure_path(pmcid)) as tmp:
            tmp.write_text(json.dumps({"reason": reason, "detail": detail}))

    def _saved(self, pmcid: str) -> FullText | None:
        try:
            saved = json.loads((self.root / f"{pmcid}.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        folder = self.root / saved["version"]
        files = [folder / name for name in [saved["xml"], *saved["media"], saved["pdf"] or ""]]
        if not all(path.is_file() for path in files if path != folder):
            return None
        return FullText(
            version=saved["version"],
            license=saved["license"],
            xml=folder / saved["xml"],
            media=[folder / name for name in saved["media"]],
            pdf=folder / saved["pdf"] if saved["pdf"] else None,
        )

    # -- the bucket ------------------------------------------------------------------------
    def latest_version(self, pmcid: str) -> str | None:
        """``PMC<id>.<n>`` with the highest ``n`` in the bucket, else None."""
        params = {"list-type": "2", "prefix": f"{pmcid}.", "delimiter": "/"}
        versions = self.bucket.request(  # not cached: a re-asked article may have appeared
            "s3-list", self.cloud_url, params, check=_check_versions, identify=False, cache=False
        )
        return versions[-1] if versions else None

    def metadata(self, version: str) -> dict:
        url = f"{self.cloud_url}metadata/{version}.json"
        return self.bucket.request(
            "s3-metadata", url, check=_check_metadata, identify=False, ext="json"
        )

    def _download(self, url: str, folder: Path, kind: str) -> Path:
        key, md5 = object_key(url)
        path = folder / PurePosixPath(key).name
        if path.is_file():
            return path
        body = self.bucket.request(
            f"s3-{kind}",
            self.cloud_url + urllib.parse.quote(key),
            check=_checker(md5, kind),
            identify=False,
            cache=False,
            max_bytes=self.max_bytes,
        )
        with atomic_path(path) as tmp:
            tmp.write_bytes(body)
        return path

    def full_text(self, pmcid: str) -> FullText | tuple[str, str]:
        """The cached full text of ``pmcid`` (downloaded if needed), or ``(reason, detail)``."""
        if not _PMCID.match(pmcid):
            return SkipReason.MALFORMED_PMC_ID, pmcid
        if (saved := self._saved(pmcid)) is not None:
            self.bucket.stats.cache_hits["pmc full text"] += 1
            return saved
        if (remembered := self._remembered(pmcid)) is not None:
            self.bucket.stats.cache_hits["pmc failure"] += 1
            return remembered
        try:
            outcome = self._fetch(pmcid)
        except Rejected as exc:
            outcome = ("full text unusable", str(exc))
        except StatusError as exc:
            outcome = ("full text missing", str(exc))
        except FetchError as exc:
            outcome = ("full text download failed", str(exc))
        if isinstance(outcome, tuple):
            self._remember(pmcid, *outcome)
        return outcome

    def _fetch(self, pmcid: str) -> FullText | tuple[str, str]:
        version = self.latest_version(pmcid)
        if version is None:
            return SkipReason.NOT_IN_PMC_OA, f"no {pmcid}.<version>/ folder in the bucket"
        meta = self.metadata(version)
        if not meta.get("is_pmc_openaccess"):
            return SkipReason.NOT_OPEN_ACCESS, f"{version}: is_pmc_openaccess is false"
        if meta.get("is_retracted"):
            return SkipReason.RETRACTED, f"{version}: is_retracted is true"
        folder = self.root / version
        xml = self._download(meta["xml_url"], folder, "xml")
        media = [
            self._download(url, folder, "image")
            for url in meta.get("media_urls") or []
            if PurePosixPath(object_key(url)[0]).suffix.lower() in IMAGE_SUFFIXES
        ]
        pdf = None
        if meta.get("pdf_url"):
            try:
                pdf = self._download(meta["pdf_url"], folder, "pdf")
            except (Rejected, FetchError) as exc:  # the XML and figures are still worth it
                log.warning("%s: PDF not kept (%s)", version, exc)
        text = FullText(version, meta.get("license_code"), xml, media, pdf)
        record = {
            "version": version,
            "license": text.license,
            "xml": xml.name,
            "media": [p.name for p in media],
            "pdf": pdf.name if pdf else None,
        }
        with atomic_path(self.root / f"{pmcid}.json") as tmp:  # written last: all files are in
            tmp.write_text(json.dumps(record))
        return text

    # -- articles --------------------------------------------------------------------------
    def attach(self, articles: Sequence[Article], store: RawStore) -> Iterator[Skipped]:
        """Set ``jats_path``, ``pdf_path`` and ``license`` on the articles whose full text could
        be had (figure images go next to the XML); yield a skip for the rest."""
        missing = [a.doc_id for a in articles if not a.pmcid and a.pmid]
        if missing and self.idconv:
            pmcids = self.lookup_pmcids(missing)
            for article in articles:
                if not article.pmcid and article.pmid in pmcids:
                    article.pmcid = pmcids[article.pmid]
        for article in articles:
            item = f"pmc/{article.doc_id}"
            if not article.pmcid:
                yield Skipped(item, SkipReason.NO_PMC_ID)
                continue
            text = self.full_text(article.pmcid)
            if isinstance(text, tuple):
                yield Skipped(item, text[0], f"{article.pmcid}: {text[1]}")
                continue
            folder = f"pmc/{article.doc_id}"
            article.jats_path = store.add_file(text.xml, f"{folder}/{text.xml.name}")
            for image in text.media:
                store.add_file(image, f"{folder}/{image.name}")
            if text.pdf is not None:
                article.pdf_path = store.add_file(text.pdf, f"pdfs/{article.doc_id}.pdf")
            article.license = text.license
