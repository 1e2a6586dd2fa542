"""DVC pipeline stages: fetch → split → vectorize → train → evaluate (and a linear baseline).

Each stage is a module runnable as ``python -m stages.<name>``; the modules without a
``__main__`` block are the pieces the stages share.
"""
