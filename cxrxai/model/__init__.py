"""The model stack (torch + MONAI). Import it only where inference or training is needed."""
