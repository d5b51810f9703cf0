"""Networks: feature layers, backbones, the published musicnn graphs, the taggers and their packages, and the
lyrics and cover encoders (see `tagging`)."""
