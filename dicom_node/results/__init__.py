"""Result objects: DICOM SEG, TID 1500 SR, GSPS, secondary-capture fallback."""
