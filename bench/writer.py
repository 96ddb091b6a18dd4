"""writer: the log-burst app of `make bench`.

Builds SIZE bytes first (numbered 100-byte lines, so a gap or a reorder shows
in a cmp), then writes them to stdout in 1 MiB chunks and exits 0. The same
writer runs under pm, under PM2, and into `cat > file` for the limit.
usage: python3 writer.py [SIZE_BYTES]   (default 200 MB; a multiple of 100)
"""
import os
import sys

LINE = 100
size = int(sys.argv[1]) if len(sys.argv) > 1 else 200 * 1000 * 1000
pad = b"x" * (LINE - 11)
data = b"".join(b"%09d %s\n" % (i, pad) for i in range(size // LINE))
view = memoryview(data)
chunk = 1 << 20
off = 0
while off < len(data):
    off += os.write(1, view[off:off + chunk])
