"""track: face detection (RetinaFace), face tracks across frames and shot cuts, and the choice of the speaking face.

One module per step: weights (finding model files), detect (batched RetinaFace), shots (PySceneDetect cuts),
tracking (IoU linking, gaps, smoothing, segments), motion (mouth-region motion energy), sync (audio-visual
scores and the speaker choice), syncnet (the SyncNet network and its offset search), video (the whole per-video step).
"""
