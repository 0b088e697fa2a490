"""ShapeWorld: a procedural world of shapes, colours, textures and written words (render, scenes, text, tasks).

It is data, the first stage: attacks draw on it (typographic canvases), datasets are made from it, and the
model organisms are trained on it.
"""
