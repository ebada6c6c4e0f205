"""crop: the DVC stage crop@CORPUS (`stage`): 96x96 mouth crops packed into WebDataset shards."""
