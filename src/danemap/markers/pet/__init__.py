"""PET/SPECT markers: SUVR/SBR, P/C ratio, asymmetry, partial-volume correction, kinetics."""
