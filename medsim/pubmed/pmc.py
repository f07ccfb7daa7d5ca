"""Full text of open-access articles from the PMC Cloud Service: JATS XML, figures, PDF, licence.

PMC retired its FTP service and the OA Web Service (``oa.fcgi``) in August 2026; full text is
served only by the PMC Cloud Service, the world-readable S3 bucket ``pmc-oa-opendata``, over
plain HTTPS without login (its layout: :mod:`medsim.pubmed.bucket`). PMCIDs missing from a
PubMed record come from the ID Converter API (``pmc.ncbi.nlm.nih.gov/tools/idconv/api/v1/
articles/``, ``idtype=pmid``, JSON ``records`` with ``pmid``, ``pmcid``, ``requested-id``; at
most 200 ids per request; the old ``/pmc/utils/idconv/v1.0/`` only redirects there).

Full text is optional, in fact: whatever goes wrong with the bucket (no route to it, DNS, a
403 from a proxy, 503 ``SlowDown`` after every retry, a URL outside the bucket, an object that
is not what its metadata says) skips that article's full text with a reason, and the fetch goes
on; an unreachable bucket is tried once per run (a bucket lost mid-run, three articles in a
row), after which every article is skipped at once.
Each part fails on its own: the JATS XML, each figure image, the PDF (images only with their
XML, which is what names the figures). Only E-utilities being unreachable ends the stage.

Version choice: the newest version that is open access, not retracted and under a licence
``fetch.licenses`` keeps (all, by default); an author manuscript above the published open-access
version does not hide it. An object whose md5 does not match reads its version's metadata again
once (NCBI replaces files; the cached metadata may be older than the object) before the part
is skipped.

Every outcome is cached under ``<cache>/pmc/``: the files of an article version once all of
them were answered (``<PMCID>.json``, with the parts whose content was unusable), and what the
bucket said about an article without usable full text (``<PMCID>.failed.json``: not open
access, retracted, no version), so a re-run does not ask again; such answers, like the
metadata and the saved full text (a newer version may have appeared), are asked again once older
than ``fetch.refresh_days``, failures at once under ``MEDSIM_RETRY_FAILED=1``; when asking again
fails on the network, the saved full text is kept. Network failures are never remembered.
``$MEDSIM_PMC_CLOUD_URL`` replaces the bucket's URL (a mirror, the test fake) and
``$MEDSIM_PMC_URL`` PMC's site root.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import urllib.parse
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path, PurePosixPath

from medsim.io import atomic_path
from medsim.names import SkipReason
from medsim.pubmed.bucket import (
    CLOUD_URL,
    ChecksumMismatch,
    check_metadata,
    check_object,
    check_versions,
    object_key,
)
from medsim.pubmed.http import (
    BadResponse,
    FetchError,
    NcbiHttp,
    OfflineError,
    RateLimiter,
    Rejected,
    StatusError,
    remember_failures,
)
from medsim.pubmed.raw import RawStore
from medsim.pubmed.records import Article, Skipped

__all__ = ["PMC_URL", "FullText", "PmcClient"]

log = logging.getLogger(__name__)

PMC_URL = "https://pmc.ncbi.nlm.nih.gov/"
IDCONV_PATH = "tools/idconv/api/v1/articles/"
IDCONV_BATCH = 200  # the converter's limit per request
# S3 serves far more than NCBI's 3-10 requests/s; a polite fixed pace of its own keeps full text
# from queueing behind E-utilities' limit (5 objects per article would triple a fetch's time).
BUCKET_RATE = 20.0
# Articles in a row whose listing or metadata failed after every retry before the bucket counts
# as lost for the run: each failure costs about 30 s of backoff, a lost bucket would cost that
# for every remaining article.
GIVE_UP_AFTER = 3
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".tif", ".tiff"})
_PMCID = re.compile(r"^PMC\d+$")
# What the bucket says about an article, not about the network: worth remembering.
REMEMBERED = frozenset({SkipReason.NOT_IN_PMC_OA, SkipReason.NOT_OPEN_ACCESS, SkipReason.RETRACTED})


@dataclass
class FullText:
    """What the bucket holds for one article version, as files in the cache."""

    version: str  # e.g. "PMC1790863.1"
    license: str | None
    xml: Path | None
    media: list[Path] = field(default_factory=list)
    pdf: Path | None = None
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (part, reason, detail)


@dataclass(eq=False)
class _PartError(Exception):
    """One part that could not be had; ``remembered`` when it is the content, not the network."""

    reason: str
    detail: str
    remembered: bool
    stale: bool = False


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


def _part_error(exc: Exception) -> _PartError:
    """The skip reason of a part's failure (an OfflineError is the caller's, not a part's)."""
    if isinstance(exc, ChecksumMismatch):
        return _PartError(SkipReason.FULL_TEXT_UNUSABLE, str(exc), True, stale=True)
    if isinstance(exc, Rejected | BadResponse):
        return _PartError(SkipReason.FULL_TEXT_UNUSABLE, str(exc), True)
    if isinstance(exc, StatusError) and exc.status == 404:
        return _PartError(SkipReason.FULL_TEXT_MISSING, str(exc), True)
    return _PartError(SkipReason.FULL_TEXT_FAILED, str(exc), False)  # 403, 5xx, timeouts


class PmcClient:
    """Finds and downloads open-access full text from the PMC Cloud bucket, with a cache.

    ``licenses``: the licence codes whose full text is kept (``None`` for a licence-less
    article); ``None`` keeps every licence.
    """

    def __init__(
        self,
        http: NcbiHttp,
        cache_dir: Path,
        max_bytes: int,
        cloud_url: str | None = None,
        pmc_url: str | None = None,
        idconv: bool = True,
        bucket_http: NcbiHttp | None = None,
        licenses: Collection[str | None] | None = None,
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
        self.licenses = None if licenses is None else frozenset(licenses)
        self.down: str | None = None  # why the bucket cannot be reached this run
        self._failures = 0  # articles in a row whose listing or metadata failed on the network

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
            except (FetchError, OfflineError, Rejected) as exc:  # full text is extra
                log.warning("PMC ID Converter failed (%s); those articles get no full text", exc)
        return found

    # -- cache -----------------------------------------------------------------------------
    def _aged(self, path: Path) -> bool:
        """Whether a remembered answer is past ``fetch.refresh_days`` (the cache's max age)."""
        max_age = self.http.cache.max_age_s if self.http.cache is not None else None
        return max_age is not None and time.time() - path.stat().st_mtime > max_age

    def _remembered(self, pmcid: str) -> tuple[str, str] | None:
        path = self.root / f"{pmcid}.failed.json"
        if not remember_failures():
            return None
        try:
            saved = json.loads(path.read_text())
            if self._aged(path):
                return None
        except (FileNotFoundError, ValueError):
            return None
        return saved["reason"], saved.get("detail", "")

    def _remember(self, pmcid: str, reason: str, detail: str) -> None:
        with atomic_path(self.root / f"{pmcid}.failed.json") as tmp:
            tmp.write_text(json.dumps({"reason": reason, "detail": detail}))

    def _saved(self, pmcid: str) -> FullText | None:
        path = self.root / f"{pmcid}.json"
        try:
            saved = json.loads(path.read_text())
            failed = [tuple(f) for f in saved.get("failed", [])]
        except (FileNotFoundError, ValueError):
            return None
        folder = self.root / saved["version"]
        names = [saved["xml"], *saved["media"], saved["pdf"]]
        if not all((folder / name).is_file() for name in names if name):
            return None
        return FullText(
            version=saved["version"],
            license=saved["license"],
            xml=folder / saved["xml"] if saved["xml"] else None,
            media=[folder / name for name in saved["media"]],
            pdf=folder / saved["pdf"] if saved["pdf"] else None,
            failed=failed,
        )

    def _current(self, pmcid: str, saved: FullText) -> bool:
        """Whether a saved full text serves as is: kept by ``fetch.licenses``, younger than
        ``fetch.refresh_days`` (a newer version may have appeared), no part to ask again for."""
        if not self._kept(saved) or self._aged(self.root / f"{pmcid}.json"):
            return False
        return not saved.failed or remember_failures()

    def _kept(self, saved: FullText | None) -> bool:
        return saved is not None and (self.licenses is None or saved.license in self.licenses)

    def _save(self, pmcid: str, text: FullText) -> None:
        record = {
            "version": text.version,
            "license": text.license,
            "xml": text.xml.name if text.xml else None,
            "media": [p.name for p in text.media],
            "pdf": text.pdf.name if text.pdf else None,
            "failed": text.failed,
        }
        with atomic_path(self.root / f"{pmcid}.json") as tmp:  # written last: all files are in
            tmp.write_text(json.dumps(record))

    # -- the bucket ------------------------------------------------------------------------
    def versions(self, pmcid: str) -> list[str]:
        """``PMC<id>.<n>`` folders in the bucket, newest first."""
        params = {"list-type": "2", "prefix": f"{pmcid}.", "delimiter": "/"}
        versions = self.bucket.request(  # not cached: a re-asked article may have appeared
            "s3-list", self.cloud_url, params, check=check_versions, identify=False, cache=False
        )
        return versions[::-1]

    def metadata(self, version: str, fresh: bool = False) -> dict:
        url = f"{self.cloud_url}metadata/{version}.json"
        return self.bucket.request(
            "s3-metadata", url, check=check_metadata, identify=False, ext="json", fresh=fresh
        )

    def _unusable(self, version: str, meta: dict) -> tuple[str, str] | None:
        """Why ``version`` is not the one to take, else None."""
        if not meta.get("is_pmc_openaccess"):
            return SkipReason.NOT_OPEN_ACCESS, f"{version}: is_pmc_openaccess is false"
        if meta.get("is_retracted"):
            return SkipReason.RETRACTED, f"{version}: is_retracted is true"
        code = meta.get("license_code")
        if self.licenses is not None and code not in self.licenses:
            return SkipReason.LICENCE_NOT_KEPT, f"{version}: license_code {code!r}"
        return None

    def _choose(self, pmcid: str) -> tuple[str, dict] | tuple[str, str]:
        """``(version, metadata)`` of the newest usable version, else the newest's reason."""
        versions = self.versions(pmcid)
        if not versions:
            return SkipReason.NOT_IN_PMC_OA, f"no {pmcid}.<version>/ folder in the bucket"
        newest_why = None
        for version in versions:
            meta = self.metadata(version)
            why = self._unusable(version, meta)
            if why is None:
                return version, meta
            newest_why = newest_why or why
        return newest_why

    def _download(self, url: str, folder: Path, file_type: str) -> Path:
        key, md5 = object_key(url)
        path = folder / PurePosixPath(key).name
        if path.is_file():
            return path
        body = self.bucket.request(
            f"s3-{file_type}",
            self.cloud_url + urllib.parse.quote(key),
            check=check_object(md5, file_type),
            identify=False,
            cache=False,
            max_bytes=self.max_bytes,
        )
        with atomic_path(path) as tmp:
            tmp.write_bytes(body)
        return path

    def _part(self, url: str | None, folder: Path, file_type: str) -> Path:
        """One object, or a :class:`_PartError`; an :class:`OfflineError` goes up."""
        if not url:
            raise _PartError(SkipReason.FULL_TEXT_MISSING, f"no {file_type} in the metadata", True)
        try:
            return self._download(url, folder, file_type)
        except (Rejected, BadResponse, FetchError) as exc:
            raise _part_error(exc) from None

    def _parts(self, version: str, meta: dict) -> tuple[FullText, bool, bool]:
        """The version's parts, each on its own: ``(text, all answered, any stale md5)``."""
        folder = self.root / version
        text = FullText(version, meta.get("license_code"), None)
        errors: list[_PartError] = []

        def get(url: str | None, file_type: str, name: str) -> Path | None:
            try:
                return self._part(url, folder, file_type)
            except _PartError as exc:
                errors.append(exc)
                text.failed.append((name, exc.reason, exc.detail))
                return None

        text.xml = get(meta.get("xml_url"), "xml", "xml")
        if text.xml is not None:  # figures are named by the XML: no use without it
            for url in meta.get("media_urls") or []:
                name = PurePosixPath(urllib.parse.urlsplit(url).path).name
                if PurePosixPath(name).suffix.lower() not in IMAGE_SUFFIXES:
                    continue  # supplements: not figures
                if (image := get(url, "image", name)) is not None:
                    text.media.append(image)
        if meta.get("pdf_url"):
            text.pdf = get(meta["pdf_url"], "pdf", "pdf")
        answered = all(e.remembered for e in errors)
        return text, answered, any(e.stale for e in errors)

    def full_text(self, pmcid: str) -> FullText | tuple[str, str]:
        """The cached full text of ``pmcid`` (downloaded if needed), or ``(reason, detail)``."""
        if not _PMCID.match(pmcid):
            return SkipReason.MALFORMED_PMC_ID, pmcid
        saved = self._saved(pmcid)
        if saved is not None and self._current(pmcid, saved):
            self.bucket.stats.cache_hits["pmc full text"] += 1
            return saved
        if (remembered := self._remembered(pmcid)) is not None:
            self.bucket.stats.cache_hits["pmc failure"] += 1
            return remembered
        # asking again failed on the network: an older saved full text beats none
        fallback = saved if self._kept(saved) else None
        if self.down is not None:
            return fallback or (SkipReason.BUCKET_UNREACHABLE, self.down)
        try:
            outcome = self._fetch(pmcid)
        except OfflineError as exc:  # no route to the bucket: do not try it again this run
            self.down = str(exc).split(": no network")[0]
            log.warning("PMC Cloud bucket unreachable (%s): no full text this run", self.down)
            return fallback or (SkipReason.BUCKET_UNREACHABLE, self.down)
        except (Rejected, BadResponse, FetchError) as exc:  # listing or metadata
            error = _part_error(exc)
            self._failures = 0 if error.remembered else self._failures + 1
            if self._failures >= GIVE_UP_AFTER:  # a bucket lost mid-run: stop asking it
                self.down = f"{self._failures} articles in a row failed, the last: {error.detail}"
                log.warning("PMC Cloud bucket unusable (%s): no more full text this run", self.down)
            return (fallback if not error.remembered else None) or (error.reason, error.detail)
        self._failures = 0
        if isinstance(outcome, tuple) and outcome[0] in REMEMBERED:
            self._remember(pmcid, *outcome)
        return outcome

    def _fetch(self, pmcid: str) -> FullText | tuple[str, str]:
        version, meta = self._choose(pmcid)
        if not isinstance(meta, dict):  # no usable version: (reason, detail)
            return version, meta
        text, answered, stale = self._parts(version, meta)
        if stale:  # metadata older than an object: read it again, once
            text, answered, _ = self._parts(version, self.metadata(version, fresh=True))
        if answered:
            self._save(pmcid, text)
        return text

    # -- articles --------------------------------------------------------------------------
    def attach(self, articles: Sequence[Article], store: RawStore) -> Iterator[Skipped]:
        """Set ``jats_path``, ``pdf_path`` and ``license`` on the articles whose full text could
        be had (figure images go next to the XML); yield a skip for the rest, and for each part
        that could not be had (``pmc/<doc_id>/<part>``)."""
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
            if text.xml is not None:
                article.jats_path = store.add_file(text.xml, f"{item}/{text.xml.name}")
            for image in text.media:
                store.add_file(image, f"{item}/{image.name}")
            if text.pdf is not None:
                article.pdf_path = store.add_file(text.pdf, f"pdfs/{article.doc_id}.pdf")
            if text.xml is not None or text.pdf is not None:
                article.license = text.license
            for part, reason, detail in text.failed:
                yield Skipped(f"{item}/{part}", reason, f"{text.version}: {detail}")
