"""Every unit conversion in one place.

libvirt speaks MiB/s (migration speed) and pages/s (`memory_dirty_rate`), QEMU bytes/s
(`max-bandwidth`), link vendors Mbit/s (decimal). Names carry their unit; nothing else converts.
"""

BYTES_PER_MIB = 1 << 20
BITS_PER_BYTE = 8
BITS_PER_MBIT = 1_000_000
MS_PER_S = 1000.0


def mib_to_bytes(mib: float) -> float:
    return mib * BYTES_PER_MIB


def bytes_to_mib(n_bytes: float) -> float:
    return n_bytes / BYTES_PER_MIB


def mib_s_to_bytes_s(mib_s: float) -> float:
    return mib_s * BYTES_PER_MIB


def bytes_s_to_mib_s(bytes_s: float) -> float:
    return bytes_s / BYTES_PER_MIB


def mbit_s_to_bytes_s(mbit_s: float) -> float:
    return mbit_s * BITS_PER_MBIT / BITS_PER_BYTE


def bytes_s_to_mbit_s(bytes_s: float) -> float:
    return bytes_s * BITS_PER_BYTE / BITS_PER_MBIT


def mib_s_to_mbit_s(mib_s: float) -> float:
    return bytes_s_to_mbit_s(mib_s_to_bytes_s(mib_s))


def mib_to_pages(mib: float, page_size_bytes: int) -> float:
    return mib_to_bytes(mib) / page_size_bytes


def pages_to_mib(pages: float, page_size_bytes: int) -> float:
    return bytes_to_mib(pages * page_size_bytes)


def pages_to_bytes(pages: float, page_size_bytes: int) -> float:
    return pages * page_size_bytes


def bytes_to_pages(n_bytes: float, page_size_bytes: int) -> float:
    return n_bytes / page_size_bytes


def mib_s_to_pages_s(mib_s: float, page_size_bytes: int) -> float:
    return mib_s_to_bytes_s(mib_s) / page_size_bytes


def pages_s_to_mib_s(pages_s: float, page_size_bytes: int) -> float:
    return bytes_s_to_mib_s(pages_s * page_size_bytes)


def ms_to_s(ms: float) -> float:
    return ms / MS_PER_S


def s_to_ms(s: float) -> float:
    return s * MS_PER_S


def mib_to_gib(mib: float) -> float:
    return mib / 1024.0


def bytes_to_gb(n_bytes: float) -> float:
    """Decimal gigabytes (10^9 bytes), as Kubernetes' resource.Giga counts."""
    return n_bytes / 1e9
