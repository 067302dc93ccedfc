"""Figures of `kohaku-prep convert` on a generated danbooru JSON Lines dump: time and peak memory for the
whole dump and for one a fifth its size (peak memory must not grow with the input), against reading the
resulting Parquet. Each measurement runs in a process of its own; the generated files are deleted at the end.

    python scripts/convert_bench.py --posts 5000000 --dir /tmp/convert-bench
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path


def generate(path: Path, n: int, seed: int = 0) -> None:
    """n posts as danbooru's dump writes them: its field names, nested media_asset, ~500 bytes a line.
    Tag strings come from a pool drawn once (generation stays quick; convert does not care)."""
    rng = random.Random(seed)
    general = [" ".join(["1girl", *(f"tag{rng.randrange(5000)}" for _ in range(12))]) for _ in range(4096)]
    line = ('{{"id":{i},"created_at":"{year:04d}-0{month}-1{day}T12:00:00.000-04:00","score":{score},'
            '"md5":"{md5}","rating":"{rating}","fav_count":{fav},"file_ext":"jpg","parent_id":null,"has_children":false,"is_deleted":{deleted},'
            '"is_banned":false,"tag_string_general":"{general}","tag_string_character":"character_{c}_(series)",'
            '"tag_string_copyright":"series_{c}","tag_string_artist":"artist_{a}","tag_string_meta":"highres",'
            '"file_url":"https://cdn.donmai.us/{md5}.jpg",'
            '"media_asset":{{"id":{i},"variants":[{{"type":"180x180","width":180}}]}}}}\n')
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(1, n + 1):
            bits = rng.getrandbits(128)
            fh.write(line.format(i=i, year=2005 + i * 19 // n, month=1 + i % 9, day=i % 10, score=i % 50,
                                 md5=f"{bits:032x}", rating="gsqe"[bits & 3], fav=(bits >> 8) % 300,
                                 deleted="true" if i % 31 == 0 else "false", general=general[(bits >> 20) & 4095],
                                 c=(bits >> 40) % 800, a=(bits >> 50) % 2000))


MEASURE = """
import json, resource, sys, time
from pathlib import Path
t = time.perf_counter()
{body}
print(json.dumps({{"seconds": round(time.perf_counter() - t, 1),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}}))
"""
CONVERT = ("from kohaku_prep.dataset import convert\n"
           "n, bad = convert.convert_json_lines(Path(sys.argv[1]), Path(sys.argv[2]), False, lambda n: None)")
READ_TABLE = "import pyarrow.parquet as pq\nt0 = pq.read_table(sys.argv[1])"
READ_POSTS = ("from kohaku_prep.dataset import metadata\nfrom kohaku_prep.dataset.bad_metadata import BadRows\n"
              "posts = metadata.read_posts(metadata.locate(Path(sys.argv[1])), 'danbooru', BadRows('fail'))")


def measure(body: str, *args: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", MEASURE.format(body=body), *map(str, args)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=5_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/convert-bench"))
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    try:
        for name, posts in (("fifth", args.posts // 5), ("full", args.posts)):
            src, out = args.dir / f"{name}.json", args.dir / f"{name}.parquet"
            t = time.perf_counter()
            generate(src, posts)
            print(f"generated {posts:,} posts, {src.stat().st_size / 2**30:.2f} GiB, in "
                  f"{time.perf_counter() - t:.0f} s", flush=True)
            result = measure(CONVERT, src, out)
            print(f"convert {name}: {posts:,} posts, {src.stat().st_size / 2**30:.2f} GiB JSON -> "
                  f"{out.stat().st_size / 2**20:.0f} MiB Parquet: {result}", flush=True)
            src.unlink()  # one JSON file on disk at a time
        out = args.dir / "full.parquet"
        print(f"read full Parquet (pyarrow.parquet.read_table): {measure(READ_TABLE, out)}", flush=True)
        print(f"read full Parquet (metadata.read_posts): {measure(READ_POSTS, out)}", flush=True)
    finally:
        shutil.rmtree(args.dir)
    print(f"this process: peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")


if __name__ == "__main__":
    main()
