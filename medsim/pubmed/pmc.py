"""PMC open-access PDFs for fetched articles: PMID -> PMCID -> OA link -> capped download.

- PMCID: the record's own ``ArticleIdList`` pmc id; for the rest, one batched call to the PMC
  ID converter (``idconv``) per efetch batch.
- Link: the PMC OA web service (``oa.fcgi?id=PMC...``), its ``<link format="pdf">``. Its hrefs
  are ``ftp://ftp.ncbi.nlm.nih.gov/...``; the same files are served over HTTPS, so the prefix
  is rewritten (to ``$MEDSIM_PMC_FTP_URL`` when set).
- Download: stops reading past ``max_bytes``; accepted only if the body starts with ``%PDF-``.
  Saved atomically as ``<cache>/pdfs/PMC....pdf``, then placed at ``data/raw/pdfs/<doc_id>.pdf``.

No PMCID, not open access, no PDF link, too large or not a PDF: the article is kept without a
PDF and a ``Skipped("pdfs/<doc_id>.pdf", reason, detail)`` is yielded. The definitive answers
(not open access, too large, not a PDF) are cached too, so a warm re-run makes no request.
"""

from __future__ import annotations

import json
import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from email.message import Message
from pathlib import Path
from typing import TYPE_CHECKING

from medsim.io import atomic_path
from medsim.pubmed.http import BadResponse, FetchError, NcbiHttp, Rejected
from medsim.pubmed.records import Article, Skipped

if TYPE_CHECKING:
    from medsim.fetch import RawStore

__all__ = ["FTP_URL", "PMC_URL", "PmcClient", "is_pdf", "oa_pdf_href", "rewrite_ftp"]

log = logging.getLogger(__name__)

PMC_URL = "https://www.ncbi.nlm.nih.gov/pmc/utils/"
FTP_URL = "https://ftp.ncbi.nlm.nih.gov/"
NCBI_FTP_PREFIXES = ("ftp://ftp.ncbi.nlm.nih.gov/", "https://ftp.ncbi.nlm.nih.gov/")
IDCONV_BATCH = 200  # the converter's limit per request


def is_pdf(head: bytes) -> bool:
    """Whether a body starts like a PDF (``%PDF-``, leading whitespace tolerated)."""
    return head[:1024].lstrip().startswith(b"%PDF-")


def rewrite_ftp(href: str, ftp_url: str = FTP_URL) -> str:
    """NCBI's FTP hrefs as HTTPS URLs under ``ftp_url`` (other hosts unchanged)."""
    for prefix in NCBI_FTP_PREFIXES:
        if href.startswith(prefix):
            return ftp_url.rstrip("/") + "/" + href[len(prefix) :]
    return href


def oa_pdf_href(body: bytes) -> tuple[str | None, str, str]:
    """``(href, "", "")`` for the PDF link of an OA answer, else ``(None, reason, detail)``.

    Raises :class:`~medsim.pubmed.http.BadResponse` if the answer is not the OA XML.
    """
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise BadResponse(f"OA answer is not XML: {exc}") from None
    if root.tag != "OA":
        raise BadResponse(f"OA answer has root <{root.tag}>")
    error = root.find("error")
    if error is not None:
        code = error.get("code", "")
        reason = "not open access" if code == "idIsNotOpenAccess" else "not in pmc oa"
        return None, reason, f"{code}: {(error.text or '').strip()}"
    for link in root.iterfind("records/record/link"):
        if link.get("format") == "pdf" and link.get("href"):
            return link.get("href"), "", ""
    formats = sorted({link.get("format", "?") for link in root.iterfind("records/record/link")})
    return None, "no pdf link", f"formats: {', '.join(formats) or 'none'}"


def _check_oa(body: bytes, headers: Message) -> tuple[str | None, str, str]:
    return oa_pdf_href(body)


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


def _check_pdf(body: bytes, headers: Message) -> bytes:
    if not is_pdf(body):
        kind = headers.get("Content-Type", "unknown type")
        raise Rejected(f"not a pdf ({kind}, starts {body[:16]!r})")
    return body


class PmcClient:
    """Finds, downloads and caches the open-access PDFs of articles."""

    def __init__(
        self,
        http: NcbiHttp,
        cache_dir: Path,
        max_bytes: int,
        base_url: str | None = None,
        ftp_url: str | None = None,
        idconv: bool = True,
    ) -> None:
        url = base_url or os.environ.get("MEDSIM_PMC_URL") or PMC_URL
        self.base_url = url.rstrip("/") + "/"
        self.ftp_url = ftp_url or os.environ.get("MEDSIM_PMC_FTP_URL") or FTP_URL
        self.http = http
        self.pdf_dir = Path(cache_dir) / "pdfs"
        self.max_bytes = max_bytes
        self.idconv = idconv

    def lookup_pmcids(self, pmids: Sequence[str]) -> dict[str, str]:
        """PMID -> PMCID from the ID converter, for the PMIDs PMC knows."""
        found: dict[str, str] = {}
        for start in range(0, len(pmids), IDCONV_BATCH):
            params = {"ids": ",".join(pmids[start : start + IDCONV_BATCH]), "format": "json"}
            try:
                found |= self.http.request(
                    "idconv",
                    self.base_url + "idconv/v1.0/",
                    params,
                    check=_check_idconv,
                    ext="json",
                )
            except (FetchError, Rejected) as exc:  # PDFs are extras: never fail the fetch here
                log.warning("PMC ID converter failed (%s); those articles get no PDF", exc)
        return found

    def _cached(self, pmcid: str) -> tuple[Path | None, dict | None]:
        pdf = self.pdf_dir / f"{pmcid}.pdf"
        if pdf.exists():
            return pdf, None
        marker = self.pdf_dir / f"{pmcid}.skip.json"
        if marker.exists():
            return None, json.loads(marker.read_text())
        return None, None

    def _remember_skip(self, pmcid: str, reason: str, detail: str) -> None:
        with atomic_path(self.pdf_dir / f"{pmcid}.skip.json") as tmp:
            tmp.write_text(json.dumps({"reason": reason, "detail": detail}))

    def pdf_for(self, pmcid: str) -> tuple[Path | None, str, str]:
        """The cached PDF of ``pmcid`` (downloaded if needed), or ``(None, reason, detail)``."""
        pdf, remembered = self._cached(pmcid)
        if pdf is not None:
            self.http.stats.cache_hits["pdf"] += 1
            return pdf, "", ""
        if remembered is not None:
            self.http.stats.cache_hits["pdf"] += 1
            return None, remembered["reason"], remembered["detail"]
        try:
            href, reason, detail = self.http.request(
                "oa", self.base_url + "oa/oa.fcgi", {"id": pmcid}, check=_check_oa, identify=False
            )
        except (FetchError, Rejected) as exc:
            return None, "pdf lookup failed", str(exc)
        if href is None:
            return None, reason, detail
        url = rewrite_ftp(href, self.ftp_url)
        try:
            body = self.http.request(
                "pdf",
                url,
                check=_check_pdf,
                identify=False,
                cache=False,
                max_bytes=self.max_bytes,
            )
        except Rejected as exc:
            reason = "pdf too large" if str(exc).startswith("too large") else "not a pdf"
            self._remember_skip(pmcid, reason, f"{url}: {exc}")
            return None, reason, f"{url}: {exc}"
        except FetchError as exc:  # transient or 404: not remembered, a re-run tries again
            return None, "pdf download failed", str(exc)
        pdf = self.pdf_dir / f"{pmcid}.pdf"
        with atomic_path(pdf) as tmp:
            tmp.write_bytes(body)
        return pdf, "", ""

    def attach_pdfs(self, articles: Sequence[Article], store: RawStore) -> Iterator[Skipped]:
        """Set ``pdf_path`` on the articles whose PDF could be had; yield a skip for the rest."""
        missing = [a.doc_id for a in articles if not a.pmcid and a.pmid]
        if missing and self.idconv:
            pmcids = self.lookup_pmcids(missing)
            for article in articles:
                if not article.pmcid and article.pmid in pmcids:
                    article.pmcid = pmcids[article.pmid]
        for article in articles:
            item = f"pdfs/{article.doc_id}.pdf"
            if not article.pmcid:
                yield Skipped(item, "no pmc id")
                continue
            pdf, reason, detail = self.pdf_for(article.pmcid)
            if pdf is None:
                yield Skipped(item, reason, f"{article.pmcid}: {detail}")
            else:
                article.pdf_path = store.add_file(pdf, f"pdfs/{article.doc_id}.pdf")
