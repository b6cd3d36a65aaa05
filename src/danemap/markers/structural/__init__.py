"""Structural MRI markers: regional volumes and ICV.

From FreeSurfer/FastSurfer ``aseg.stats``, SynthSeg volume CSVs, a ``*_dseg`` label image
with a FreeSurfer lookup table, or a raw T1w processed with ANTsPy.
"""
