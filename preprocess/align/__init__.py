"""align: 68-point landmarks on the tracked face, canonical 5-point alignment and the 96x96 mouth-crop transforms.

One file per step: `landmarks_dlib` / `landmarks_fan` (two backends, iBUG 68-point numbering),
`smoothing` (gap interpolation, segment splitting, smoothing), `geometry` (the canonical 256x256 face and
similarity transforms), `mouth` (the mouth crop's placement), `align_video` (all of it in one decode), `align_params` (the
`align:` section of params.yaml) and `stage` (the DVC stage align@CORPUS).
"""
