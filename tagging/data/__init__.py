"""Training data: Lightning datamodules, random crops, the decoded-audio cache and cached embeddings (see
`tagging`)."""
