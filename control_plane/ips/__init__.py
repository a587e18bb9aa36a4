"""The IP inventory: every address a server owns, with its role, warmup, pause and listing."""
