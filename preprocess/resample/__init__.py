"""resample: any source video to constant 25 fps video and 16 kHz mono audio (`convert`), and the DVC stage
resample@CORPUS (`stage`)."""
