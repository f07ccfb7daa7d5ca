"""Figures and tables from article PDFs (PyMuPDF, its layout model, camelot).

:func:`~medsim.pdf.extract.extract_pdf` is the pure per-PDF core;
:func:`~medsim.pdf.stage.run_extract` is the DVC stage around it.
"""
