"""Studies: grids of variants of a base run config, each block an ordinary resumable run, compared pairwise
against a named base with intervals. ``safeglass neurons eval`` is one preset (glasses over a strength
curve); the defense study is another."""
