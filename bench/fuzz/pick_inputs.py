#!/usr/bin/env python3
"""Picks a handful of inputs from a target's working corpus for tests/fuzz_corpus.

    bench/fuzz/pick_inputs.py TARGET [--count N] [--max-bytes B] [--dry-run]

Cuts the working corpus build-fuzz/corpus/TARGET (its inputs of at most B bytes, default
4096) down to a set cover of its features (libFuzzer's -set_cover_merge), measures what the
seeds already in tests/fuzz_corpus/TARGET reach and what each remaining input reaches (edges
and features, from merge control files), and picks greedily the inputs that add the most
edges (ties: more new features, then the smaller input), at most N (default 8). Each goes
into tests/fuzz_corpus/TARGET/fuzz-<sha1 prefix>. Run it after bench/fuzz/run.
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def coverage(binary, paths, scratch):
    """The edges and features `paths` reach together, from a merge control file (each
    input's lines there list only what it added, so their union is the group's)."""
    group = tempfile.mkdtemp(dir=scratch)
    for i, path in enumerate(paths):
        shutil.copyfile(path, os.path.join(group, f"{i:06d}"))
    out = tempfile.mkdtemp(dir=scratch)
    control = os.path.join(scratch, "control")
    if os.path.exists(control):  # libFuzzer would resume the merge it describes
        os.remove(control)
    subprocess.run(["nice", "-n", "19", binary, "-merge=1", "-merge_control_file=" + control,
                    out, group], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False)
    edges, features = set(), set()
    with open(control) as f:
        for line in f:
            words = line.split()
            if words and words[0] == "COV":
                edges.update(map(int, words[2:]))
            elif words and words[0] == "FT":
                features.update(map(int, words[2:]))
    shutil.rmtree(group)
    shutil.rmtree(out)
    return edges, features


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--max-bytes", type=int, default=4096)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()

    binary = os.path.join(ROOT, "build-fuzz", "fuzz", "fuzz-" + args.target)
    seeds = os.path.join(ROOT, "tests", "fuzz_corpus", args.target)
    working = os.path.join(ROOT, "build-fuzz", "corpus", args.target)
    if not os.path.exists(binary):
        sys.exit(f"pick_inputs: {binary} is missing (bench/fuzz/run builds it)")

    with tempfile.TemporaryDirectory() as scratch:
        # The working corpus cut down to a set cover of its features, on top of the seeds.
        cover = os.path.join(scratch, "cover")
        small = os.path.join(scratch, "small")
        os.mkdir(cover)
        os.mkdir(small)
        for name in os.listdir(working):
            path = os.path.join(working, name)
            if os.path.getsize(path) <= args.max_bytes:
                shutil.copyfile(path, os.path.join(small, name))
        subprocess.run(["nice", "-n", "19", binary, "-set_cover_merge=1", cover, small],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        seed_files = [os.path.join(seeds, f) for f in sorted(os.listdir(seeds))]
        covered, features = coverage(binary, seed_files, scratch)
        start = len(covered)
        candidates = {}
        for name in sorted(os.listdir(cover)):
            path = os.path.join(cover, name)
            candidates[path] = coverage(binary, [path], scratch)

        picked = []
        while len(picked) < args.count and candidates:
            def gain(path):
                edges, fts = candidates[path]
                return (len(edges - covered), len(fts - features), -os.path.getsize(path))
            best = max(candidates, key=gain)
            if gain(best)[0] == 0 and gain(best)[1] == 0:
                break
            edges, fts = candidates.pop(best)
            covered |= edges
            features |= fts
            with open(best, "rb") as f:
                data = f.read()
            picked.append((best, data, len(covered), len(features)))

        print(f"{args.target}: the seeds reach {start} edges")
        for path, data, edges, fts in picked:
            name = "fuzz-" + hashlib.sha1(data).hexdigest()[:12]
            print(f"  {name}  {len(data):5d} bytes  -> {edges} edges, {fts} features")
            if not args.dry_run:
                with open(os.path.join(seeds, name), "wb") as f:
                    f.write(data)


if __name__ == "__main__":
    main()
