"""Synthetic chest radiograph phantoms with ground-truth masks (issue 4): anatomy, X-ray formation,
the 14 observations, and writers in the CheXpert layout."""
