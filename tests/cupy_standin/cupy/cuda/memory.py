"""cupy.cuda.memory of the stand-in: a pool that counts bytes and raises OutOfMemoryError
past `set_limit(size=...)`, as CuPy's does."""


class OutOfMemoryError(MemoryError):
    def __init__(self, size, total, limit=0):
        super().__init__(f"Out of memory allocating {size:,} bytes (allocated so far: "
                         f"{total:,} bytes, limit set to: {limit:,} bytes).")


class MemoryPool:
    def __init__(self):
        self._limit = 0
        self._used = 0

    def set_limit(self, size=None, fraction=None):
        self._limit = int(size or 0)

    def get_limit(self):
        return self._limit

    def used_bytes(self):
        return self._used

    def total_bytes(self):
        return self._used

    def free_all_blocks(self, stream=None):
        self._used = 0


_POOL = MemoryPool()


def _account(array):
    """Check one new device allocation against the pool's limit (sizes are not freed:
    the limit is a per-allocation ceiling here, which is what the tests need)."""
    if _POOL._limit and array.nbytes > _POOL._limit:
        raise OutOfMemoryError(array.nbytes, _POOL._used, _POOL._limit)
