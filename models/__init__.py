"""Networks and losses (open_clip style: model code here, training code in train/). Import the submodules
directly (models.video, models.audio, models.avclip, models.detector, models.loss): importing one does not
import the others (models.audio pulls in transformers, about 4 s)."""
