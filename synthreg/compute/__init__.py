"""Where segments run: the local process pool (in the engine) or a Dask cluster (``dask.py``)."""
