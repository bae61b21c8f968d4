"""The VICReg report: built from smoke runs, checked through its PDF text, reused on rebuild."""

from __future__ import annotations

import shutil

import pytest
from pypdf import PdfReader

from lfr_report.report import render, vicreg
from lfr_report.tracking.store import FileRunStore


def _pdf_text(path) -> tuple[int, str]:
    reader = PdfReader(str(path))
    return len(reader.pages), "\n".join(page.extract_text() for page in reader.pages)


@pytest.fixture
def store(smoke_runs, isolated):
    """A private copy of the session's smoke runs, so tests may add runs to it."""
    root = isolated / "runs"
    shutil.rmtree(root)
    shutil.copytree(smoke_runs, root)
    return FileRunStore(root)


def test_pdf_from_smoke_runs_has_its_sections_captions_and_run_id(store, isolated):
    out = vicreg.build(store, "smoke", isolated / "reports" / "vicreg.pdf")
    pages, text = _pdf_text(out)
    [run] = store.find("vicreg")
    assert pages > 1
    for heading in ("What was run", "Q1: Training", "Q2: PCA vs. t-SNE", "Q3: Linear probing"):
        assert heading in text
    for caption in ("Figure 1.", "Figure 2.", "Figure 3.", "Figure 4.", "Table 1."):
        assert caption in text
    assert "Invariance term" in text and "Variance term" in text and "Covariance term" in text
    assert f"run {run.id} · synthetic · smoke scale" in text
    assert "Raw pixels" in text and "the floor" in text
    accuracy = store.metrics(run.id)["probe_test_accuracy"].values[-1]
    assert f"{100 * accuracy:.1f}%" in text  # the number in the PDF is the run's number
    assert "Page 1 of" in text


def test_second_build_reuses_the_completed_run(store, isolated):
    out = isolated / "reports" / "vicreg.pdf"
    vicreg.build(store, "smoke", out)
    first = out.stat().st_mtime_ns
    vicreg.build(store, "smoke", out)
    assert len(store.find("vicreg")) == 1
    assert out.stat().st_mtime_ns >= first


def test_failed_build_leaves_the_previous_pdf_intact(store, isolated, monkeypatch):
    out = isolated / "reports" / "vicreg.pdf"
    vicreg.build(store, "smoke", out)
    before = out.read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(vicreg, "render_html", broken)
    with pytest.raises(RuntimeError):
        vicreg.build(store, "smoke", out)
    assert out.read_bytes() == before


def test_pdf_write_is_atomic_when_weasyprint_fails(isolated, monkeypatch):
    out = isolated / "x.pdf"
    out.write_bytes(b"%PDF-old")

    class Exploding:
        def __init__(self, **kwargs):
            pass

        def write_pdf(self, target):
            with open(target, "wb") as f:
                f.write(b"partial")
            raise OSError("disk full")

    import weasyprint

    monkeypatch.setattr(weasyprint, "HTML", Exploding)
    with pytest.raises(OSError):
        render.write_pdf("<html></html>", out)
    assert out.read_bytes() == b"%PDF-old"
    assert list(isolated.glob(".x.pdf.tmp")) == []
