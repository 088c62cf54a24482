"""CXR-XAI: explainable chest X-ray AI for DICOM workflows.

Importing this package needs only numpy and pydicom: the model stack (torch, MONAI, captum) is imported
lazily by :mod:`cxrxai.model` and :mod:`cxrxai.explain`, so the DICOM readers and writers work inside
3D Slicer without torch.

Typical use (see README)::

    from cxrxai.explain import Explainer
    from cxrxai.io import read_radiograph
    explainer = Explainer.from_bundle("path/to/bundle")   # load once, in a long-lived worker
    result = explainer.explain(read_radiograph("chest.dcm"))
"""

__version__ = "0.1.0"
