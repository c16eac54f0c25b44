"""Small helpers shared by every layer: atomic output sets, safe paths, sizes, worker counts,
interrupt handling, text sanitizing for the outputs."""
