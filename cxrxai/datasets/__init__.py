"""Labelled chest radiograph sets on disk: the training layouts (CheXpert, MIMIC-CXR-JPG, our phantoms)
and the evaluation sets with localisation ground truth. Reading only; no torch."""
