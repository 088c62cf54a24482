"""Logic of the CXRXAI Slicer module that needs no Slicer: no slicer, qt, vtk or ctk imports here.

pytest covers these modules (`tests/test_slicer_logic.py`); `CXRXAI.py` is the thin Slicer glue around
them. Heavy packages (torch) are imported only by `local.py`, and only when "Run locally" is used.
"""
