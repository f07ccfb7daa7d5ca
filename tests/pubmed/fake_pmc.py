"""The fake PMC Cloud bucket ``pmc-oa-opendata`` (served by :class:`tests.pubmed.fake_eutils.
FakeServer`): version folders, metadata JSON with ``s3://`` URLs and md5s, objects, listings.

Article versions follow the bucket's 2026 layout (:mod:`medsim.pubmed.bucket`): author
manuscripts (``is_manuscript``), articles outside the open-access subset, retracted versions,
null and ``TDM`` licences. S3's own refusals are faked too: 403 ``AccessDenied`` and 503
``SlowDown`` with S3's XML bodies. Real recorded full texts (JATS, figures, PDFs from the shared
folder) fill it where a test needs real content.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

S3_ERRORS = {
    "403": b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
    b"<Message>Access Denied</Message></Error>",
    "503": b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
    b"<Message>Please reduce your request rate.</Message></Error>",
}
RANDOM_FAULTS_S3 = ("503", "500", "reset")


def make_pdf(text: str = "A small generated article.", pad: int = 0) -> bytes:
    """A valid one-page PDF made with PyMuPDF (``pad`` bytes of comment make it bigger)."""
    import pymupdf

    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), text)
    data = doc.tobytes()
    doc.close()
    return data + (b"%" + b"x" * pad + b"\n" if pad else b"")


def _content_type(name: str) -> str:
    suffix = name.rsplit(".", 1)[-1].lower()
    return {
        "xml": "application/xml",
        "txt": "text/plain",
        "pdf": "application/pdf",
        "jpg": "image/jpeg",
        "png": "image/png",
    }.get(suffix, "binary/octet-stream")


def _plain_text(xml: bytes) -> bytes:
    root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
    return " ".join(" ".join(root.itertext()).split()).encode()


def recorded_fulltexts(shared: Path) -> list[Path]:
    """The real PMC open-access JATS full texts of the shared pubmed-xml folder."""
    return sorted((shared / "pubmed-xml" / "pmc_nxml").glob("*.nxml"))


def recorded_pdfs(shared: Path) -> list[Path]:
    """The real open-access article PDFs of the shared pmc-pdfs folder."""
    return sorted((shared / "pmc-pdfs" / "pdf").glob("*.pdf"))


def recorded_images(shared: Path) -> list[Path]:
    """Real PMC figure images (the MedICaT sample), to serve as an article's media files."""
    return sorted((shared / "medicat-sample" / "sample" / "figures").glob("*.png"))


class FakeBucket:
    """The bucket half of :class:`~tests.pubmed.fake_eutils.FakeNcbi` (its ``bucket`` field)."""

    bucket: dict[str, tuple[bytes, str, bool]]

    def add_object(
        self, key: str, body: bytes, content_type: str = "binary/octet-stream", send_length=True
    ) -> None:
        self.bucket[key] = (body, content_type, send_length)

    def add_pmc_article(
        self,
        pmcid: str,
        xml: bytes,
        *,
        version: int = 1,
        pmid: str | None = None,
        media: dict[str, bytes] | None = None,
        pdf: bytes | None = None,
        license_code: str | None = "CC BY",
        open_access: bool = True,
        retracted: bool = False,
        manuscript: bool = False,
    ) -> str:
        """One article version in the PMC Cloud layout: ``metadata/<PMCID>.<v>.json`` and the
        objects under ``<PMCID>.<v>/`` (XML, plain text, PDF, media), ``s3://`` URLs with md5."""
        name = f"{pmcid}.{version}"
        files = {f"{name}.xml": xml, f"{name}.txt": _plain_text(xml)}
        if pdf is not None:
            files[f"{name}.pdf"] = pdf
        files |= media or {}
        for file, body in files.items():
            self.add_object(f"{name}/{file}", body, _content_type(file))

        def url(file: str) -> str:
            md5 = hashlib.md5(files[file]).hexdigest()
            return f"s3://pmc-oa-opendata/{name}/{file}?md5={md5}"

        metadata = {
            "pmcid": pmcid,
            "version": version,
            "pmid": int(pmid) if pmid else None,
            "doi": None,
            "is_pmc_openaccess": open_access,
            "is_manuscript": manuscript,
            "is_historical_ocr": False,
            "is_retracted": retracted,
            "license_code": license_code,
            "xml_url": url(f"{name}.xml"),
            "text_url": url(f"{name}.txt"),
            "pdf_url": url(f"{name}.pdf") if pdf is not None else None,
            "media_urls": [url(file) for file in sorted(media or {})],
        }
        self.add_object(f"metadata/{name}.json", json.dumps(metadata).encode(), "application/json")
        return name

    def listing(self, params: dict[str, str]) -> bytes:
        """S3 ListObjectsV2 (``list-type=2``): with ``delimiter=/``, the version folders."""
        prefix, delimiter = params.get("prefix", ""), params.get("delimiter", "")
        keys = sorted(k for k in self.bucket if k.startswith(prefix))
        parts = ["<Name>pmc-oa-opendata</Name>", f"<Prefix>{prefix}</Prefix>"]
        if delimiter:
            folders = sorted(
                {
                    prefix + k[len(prefix) :].split(delimiter)[0] + delimiter
                    for k in keys
                    if delimiter in k[len(prefix) :]
                }
            )
            parts += [f"<KeyCount>{len(folders)}</KeyCount><Delimiter>{delimiter}</Delimiter>"]
            parts += [f"<CommonPrefixes><Prefix>{f}</Prefix></CommonPrefixes>" for f in folders]
        else:
            parts += [f"<KeyCount>{len(keys)}</KeyCount>"]
            parts += [
                f"<Contents><Key>{k}</Key><Size>{len(self.bucket[k][0])}</Size></Contents>"
                for k in keys
            ]
        body = "".join(parts) + "<IsTruncated>false</IsTruncated>"
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{body}</ListBucketResult>'
        ).encode()


def graphic_names(xml: bytes) -> list[str]:
    """The ``xlink:href`` of every ``<graphic>`` inside a ``<fig>`` of a JATS document."""
    root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
    href = "{http://www.w3.org/1999/xlink}href"
    return [g.get(href) for fig in root.iter("fig") for g in fig.iter("graphic") if g.get(href)]


def as_jpeg(png: Path) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.open(png).convert("RGB").save(out, "JPEG", quality=80)
    return out.getvalue()


@dataclass
class RecordedFullText:
    pmid: str
    pmcid: str
    version: str
    xml: Path
    figures: int  # <fig> elements with a graphic
    has_pdf: bool


def add_recorded_fulltexts(state: FakeBucket, shared: Path) -> list[RecordedFullText]:
    """Put the real PMC JATS full texts in the fake bucket, each with an image per figure graphic
    (real PMC figures from the MedICaT sample, cycled, as JPEG) and, for the first ones, a real
    open-access PDF (another article's: the bucket's transport is what is faked here)."""
    images = [as_jpeg(p) for p in recorded_images(shared)]
    pdfs = [p.read_bytes() for p in recorded_pdfs(shared)]
    out = []
    for i, path in enumerate(recorded_fulltexts(shared)):
        xml = path.read_bytes()
        root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
        ids = {
            a.get("pub-id-type"): a.text for a in root.find("front/article-meta").iter("article-id")
        }
        pmcid = "PMC" + ids["pmc"].removeprefix("PMC")
        names = graphic_names(xml)
        media = {f"{name}.jpg": images[(i + j) % len(images)] for j, name in enumerate(names)}
        pdf = pdfs[i] if i < len(pdfs) else None
        if i == 0:  # an older version next to the current one: the newest must be taken
            state.add_pmc_article(pmcid, xml, version=1, pmid=ids.get("pmid"), media=media)
        version = state.add_pmc_article(
            pmcid, xml, version=2 if i == 0 else 1, pmid=ids.get("pmid"), media=media, pdf=pdf
        )
        figures = sum(1 for fig in root.iter("fig") if fig.find(".//graphic") is not None)
        out.append(
            RecordedFullText(ids.get("pmid"), pmcid, version, path, figures, pdf is not None)
        )
    return out
