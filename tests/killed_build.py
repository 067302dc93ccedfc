"""`kohaku-prep dataset`, SIGKILLed by itself at a chosen point of the build, for the fault tests.

    python killed_build.py POINT N MARKER -- ARGS...

runs `kohaku-prep ARGS...` and kills the process at the N-th time (counted in this run) it reaches POINT:

    image     writing an image file into the staging folder (the file is left cut off, half written)
    caption   writing a caption file (left cut off)
    manifest  writing the manifest (killed after its first row group, the file left unfinished)
    file      writing one of the small files: dataset.toml, summary.json, preset.toml and the report's files
              (its temporary file left half written)
    chart     writing one of the report's charts (report-*.png; its temporary file left half written)
    publish   every file written, the staging folder not yet renamed to the output

Just before the kill it appends "POINT N FILE" to MARKER, so a test sees which point was reached; a run
that never reaches it ends as the command does."""
import os
import signal
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq

from kohaku_prep import cli, fsutil
from kohaku_prep.dataset import build, report

POINTS = ("image", "caption", "manifest", "file", "chart", "publish")


def install(point: str, n: int, marker: Path) -> None:
    lock = threading.Lock()  # images and captions are written on several threads
    count = [0]

    def reached(what: str) -> bool:
        """True the N-th time; the lock is then kept, so that no other thread gets to write before the kill."""
        lock.acquire()
        count[0] += what == point
        if count[0] == n and what == point:
            return True
        lock.release()
        return False

    def kill(name: object) -> None:
        with open(marker, "a") as fh:
            fh.write(f"{point} {n} {name}\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    write_new = build.write_new

    def killing_write_new(path, data, dir_fd=None):
        what = "caption" if str(path).endswith(".txt") else "image"
        if reached(what):
            write_new(path, memoryview(data)[:len(data) // 2], dir_fd=dir_fd)
            kill(path)
        write_new(path, data, dir_fd=dir_fd)

    write_atomic = fsutil.write_atomic

    def killing_write_atomic(path, data):
        if reached("chart" if path.name.startswith("report-") and path.suffix == ".png" else "file"):
            tmp = fsutil.new_temp_path(path)
            tmp.write_bytes((data.encode() if isinstance(data, str) else data)[:len(data) // 2])
            kill(path.name)
        write_atomic(path, data)

    write_table = pq.ParquetWriter.write_table

    def killing_write_table(self, table, *args, **kwargs):
        write_table(self, table, *args, **kwargs)
        if reached("manifest"):
            kill("manifest.parquet")

    sync = os.sync

    def killing_sync():
        if reached("publish"):
            kill("-")
        sync()

    build.write_new = killing_write_new
    build.write_atomic = killing_write_atomic
    report.write_atomic = killing_write_atomic
    pq.ParquetWriter.write_table = killing_write_table
    build.os.sync = killing_sync  # the build's last step before it publishes the staging folder


if __name__ == "__main__":
    point, n, marker, dashes, *args = sys.argv[1:]
    assert point in POINTS and dashes == "--", sys.argv
    install(point, int(n), Path(marker))
    cli.main(args, prog_name="kohaku-prep")
