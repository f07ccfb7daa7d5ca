"""``medsim classify`` end to end on tests/search's tiny project (real encoders)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from medsim.cli import main
from tests.pubmed.fake_eutils import FakeServer, clone, has_abstract, make_pdf, recorded_articles
from tests.search.corpus import DOCS

D2_TEXT = f"{DOCS[1][4]}\n{DOCS[1][5]}"  # a training document without figures or tables
CLASSES = {"breast", "lung", "melanoma"}


def run(capsys, root: Path, *args: str) -> tuple[int, str, str]:
    code = main(["classify", "--root", str(root), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_text_json(search_project, capsys):
    code, out, _ = run(capsys, search_project, D2_TEXT, "--json")
    assert code == 0
    answer = json.loads(out)
    assert answer["label"] in CLASSES and answer["rule"] == "knn" and answer["source"] == "text"
    assert {c["label"] for c in answer["classes"]} == CLASSES
    assert sum(c["probability"] for c in answer["classes"]) == pytest.approx(1.0, abs=1e-4)
    first = answer["neighbours"][0]
    # the text of d2 is d2's stored vector: it is its own nearest training document
    assert first["doc_id"] == "d2" and first["similarity"] > 0.999
    assert first["title"] == "HER2 targeted therapy" and first["label"] == "breast"
    assert len(answer["neighbours"]) == 5  # k = 10 clipped to the 5 training documents


def test_text_rendered_and_k(search_project, capsys):
    code, out, _ = run(capsys, search_project, D2_TEXT, "--k", "2")
    assert code == 0
    assert out.startswith("text: HER2 targeted therapy")
    assert "label: " in out and "nearest labelled training documents:" in out
    assert out.count("PMID 100") == 2  # two neighbours shown with their PMIDs


def test_stored_pmid_never_votes_for_itself(search_project, capsys):
    code, out, _ = run(capsys, search_project, "--pmid", "1002", "--json")
    answer = json.loads(out)
    assert code == 0 and answer["source"] == "pmid"
    assert "d2" not in [n["doc_id"] for n in answer["neighbours"]]
    assert len(answer["neighbours"]) == 4


def test_image_alone(search_project, capsys):
    code, out, _ = run(capsys, search_project, "--image", str(search_project / "figure0.png"))
    assert code == 0 and "image: figure0.png" in out
    # the tiny corpus labels no figure's modality: there is no model to say it
    answer = json.loads(
        run(capsys, search_project, "--image", str(search_project / "figure0.png"), "--json")[1]
    )
    assert answer["source"] == "image" and answer["figure"] == []


def test_pdf(search_project, capsys, tmp_path):
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(make_pdf("Trastuzumab in HER2 positive breast cancer"))
    code, out, _ = run(capsys, search_project, "--pdf", str(pdf), "--json")
    assert code == 0
    assert json.loads(out)["query"].startswith("paper.pdf: Trastuzumab")


def test_classes_added_from_examples(search_project, capsys, tmp_path):
    glioma = tmp_path / "classes" / "glioma"
    glioma.mkdir(parents=True)
    example = "Glioblastoma resection followed by temozolomide and radiotherapy."
    (glioma / "a.txt").write_text(example)
    (glioma / "b.txt").write_text("Low grade glioma with IDH mutation in young adults.")
    code, out, _ = run(capsys, search_project, example, "--classes", str(tmp_path / "classes"))
    assert code == 0 and "glioma  (added)" in out
    args = [example, "--classes", str(tmp_path / "classes"), "--json"]
    answer = json.loads(run(capsys, search_project, *args)[1])
    assert answer["rule"] == "prototype"
    assert {c["label"] for c in answer["classes"]} == CLASSES | {"glioma"}
    added = [c for c in answer["classes"] if c["added"]]
    assert [c["label"] for c in added] == ["glioma"]


def test_batch_file_keeps_bad_rows(search_project, capsys, tmp_path):
    src = tmp_path / "batch.csv"
    pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "text": [D2_TEXT, None, "   ", None],
            "pmid": [None, "1005", None, "no-such-id"],
        }
    ).to_csv(src, index=False)
    out = tmp_path / "out.parquet"
    code, stdout, err = run(capsys, search_project, "--batch", str(src), "--out", str(out))
    assert code == 0 and "classified 2 of 4 rows (2 skipped" in stdout
    assert "classify" in err  # the progress bar
    table = pd.read_parquet(out)
    assert table["id"].tolist() == ["a", "b", "c", "d"]
    assert table["label"].notna().tolist() == [True, True, False, False]
    assert table["reason"].tolist()[:3] == ["", "", "empty text"]
    assert "neither a PMID nor a doc id" in table["reason"][3]
    assert {f"p:{c}" for c in CLASSES} <= set(table.columns)
    assert json.loads(table["neighbours"][0])[0] == "d2"


def test_batch_folder_to_csv(search_project, capsys, tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "one.txt").write_text(D2_TEXT)
    (folder / "two.pdf").write_bytes(make_pdf("Dermoscopy of melanoma"))
    (folder / "three.pdf").write_bytes(b"%PDF-1.4 not really")
    (folder / "four.docx").write_bytes(b"PK")
    out = tmp_path / "out.csv"
    code, _, _ = run(capsys, search_project, "--batch", str(folder), "--out", str(out), "--json")
    assert code == 0
    table = pd.read_csv(out, keep_default_na=False).set_index("id")
    assert table.loc["one.txt", "label"] and table.loc["two.pdf", "label"]
    assert "cannot read PDF" in table.loc["three.pdf", "reason"]
    assert "unsupported file type" in table.loc["four.docx", "reason"]


def encrypted_pdf(path: Path) -> Path:
    import pymupdf

    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "secret")
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="o", user_pw="u")
    return path


@pytest.mark.parametrize(
    "case, expected",
    [
        ("empty_text", "the text is empty"),
        ("corrupt_pdf", "cannot read PDF"),
        ("encrypted_pdf", "encrypted"),
        ("bad_image", "is not a readable image"),
        ("big_image", "is over"),
        ("empty_class", "class folder 'empty' has no .txt or .pdf example"),
        ("two_inputs", "give exactly one of"),
        ("batch_no_out", "--batch needs --out"),
    ],
)
def test_bad_input_is_one_line_and_status_2(
    search_project, capsys, tmp_path, monkeypatch, case, expected
):
    monkeypatch.setattr("medsim.classify.inputs.MAX_IMAGE_BYTES", 100)
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"%PDF-1.4\nnot a pdf at all")
    junk = tmp_path / "junk.png"
    junk.write_text("this is no image")
    (tmp_path / "classes" / "empty").mkdir(parents=True)
    (tmp_path / "classes" / "full").mkdir()
    (tmp_path / "classes" / "full" / "x.txt").write_text("Some example text.")
    args = {
        "empty_text": ["  "],
        "corrupt_pdf": ["--pdf", str(bad)],
        "encrypted_pdf": ["--pdf", str(encrypted_pdf(tmp_path / "locked.pdf"))],
        "bad_image": ["--image", str(junk)],
        "big_image": ["--image", str(search_project / "figure0.png")],
        "empty_class": ["text", "--classes", str(tmp_path / "classes")],
        "two_inputs": ["text", "--pmid", "1"],
        "batch_no_out": ["--batch", str(tmp_path)],
    }[case]
    if case == "bad_image":
        monkeypatch.setattr("medsim.classify.inputs.MAX_IMAGE_BYTES", 10**6)
    code, out, err = run(capsys, search_project, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("medsim classify: ") and expected in err


def test_pmid_fetched_or_unknown(search_project, capsys, monkeypatch, shared_data):
    template = next(a for a in recorded_articles(shared_data).values() if has_abstract(a))
    with FakeServer() as ncbi:
        ncbi.add_article(clone(template, "95000001"))
        monkeypatch.setenv("MEDSIM_EUTILS_URL", ncbi.eutils_url)
        code, out, _ = run(capsys, search_project, "--pmid", "95000001", "--json")
        assert code == 0 and "(fetched)" in json.loads(out)["query"]
        code, out, err = run(capsys, search_project, "--pmid", "95999999")
        assert code == 2 and err == "medsim classify: PubMed has no record with PMID 95999999\n"
