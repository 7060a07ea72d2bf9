"""Draw the example images (made by this script, no third-party content: CC0, like the rest of examples/).

Plain PNGs written with the standard library only (zlib + struct): a few flat shapes on a white ground,
each small enough to read in a terminal's hexdump. Run ``python examples/images/make_images.py`` to draw
them again; the files it writes are committed next to it.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

Pixel = tuple[int, int, int]
WHITE: Pixel = (255, 255, 255)


def png(width: int, height: int, colour_at: Callable[[int, int], Pixel]) -> bytes:
    """An RGB PNG of ``width`` x ``height`` whose pixel (x, y) is ``colour_at(x, y)``."""
    rows = b"".join(b"\x00" + b"".join(bytes(colour_at(x, y)) for x in range(width)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def circle(colour: Pixel, size: int = 96) -> bytes:
    """A filled circle in the middle of a white square."""
    centre, radius = size / 2, size * 0.35
    return png(size, size, lambda x, y: colour if (x - centre) ** 2 + (y - centre) ** 2 <= radius**2 else WHITE)


def bars(colours: list[Pixel], width: int = 120, height: int = 80) -> bytes:
    """A bar chart: one bar per colour, heights rising left to right."""
    step = width // len(colours)

    def at(x: int, y: int) -> Pixel:
        index = min(x // step, len(colours) - 1)
        top = height - (index + 1) * height // (len(colours) + 1)
        return colours[index] if y >= top and x % step < step - 4 else WHITE

    return png(width, height, at)


IMAGES = {
    "red_circle.png": lambda: circle((220, 30, 30)),
    "blue_circle.png": lambda: circle((30, 60, 220)),
    "bar_chart.png": lambda: bars([(30, 150, 60), (230, 160, 20), (120, 60, 180), (20, 140, 200)]),
}


def main() -> None:
    """Write every example image next to this script."""
    here = Path(__file__).resolve().parent
    for name, draw in IMAGES.items():
        (here / name).write_bytes(draw())


if __name__ == "__main__":
    main()
