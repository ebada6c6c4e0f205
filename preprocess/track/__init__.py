"""track: face detection, face tracks across frames and shot cuts, and the choice of the speaking face.

One module per step: detect (batched RetinaFace or dlib HOG), shots (PySceneDetect cuts), tracking (IoU
linking, gaps, smoothing, segments), motion (mouth-region motion energy), sync (audio-visual scores and the
speaker choice), syncnet (the SyncNet network and its offset search), track_video (the whole per-video step),
track_params (the `track:` section of params.yaml) and stage (the DVC stage track@CORPUS).
"""
