"""Synthetic chest radiograph phantoms with ground-truth masks: anatomy, X-ray formation,
the 14 observations, and writers in the CheXpert layout."""
