"""Random damage to an OMOP note table: does any person's record get another person's text?

Four persons, each with one note that carries a secret word of its own (capital letters no
note holds), written by csv.writer with quotes, commas and newlines in the text; then 0-4
random edits (a quote, a newline or a comma put in, or a character taken out) anywhere after
the header. Each table is scanned and every person loaded (no index); a person whose record
holds another person's word is a leak.

Two note alphabets:

- ``plain``: text, quotes (doubled too), commas and newlines, with no digits, so no line of a
  note can be a whole row of another person. The reader must never leak here:
  ``--expect-plain 0`` prints OK or FAIL.
- ``row-shaped`` (``--row-shaped``): notes also hold digits and lines that are, or may become
  after damage, whole rows of another person (``\\n4,2,2020,n,``). Once damage breaks quoting,
  CSV cannot tell such a line from a real row, so a few leaks remain; the figure says how few.

    python benchmarks/fuzz_omop_csv.py --n 1500 --seed 1 --expect-plain 0
    python benchmarks/fuzz_omop_csv.py --n 1500 --seed 1 --row-shaped
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
import tempfile
from pathlib import Path

from ragehr.ehr.omop import OmopCohort
from ragehr.errors import InputError, RagehrError

WORDS = {"1": "QUEBEC", "2": "ROMEO", "3": "SIERRA", "4": "TANGO"}
PLAIN = [*'abc xyz,"\n', '""', ',"', "\n,", "a,b,c,d,"]
ROW_SHAPED = [*PLAIN, "1,", "2,", "\n3,3,", "\n2,", "\n4,2,", "\n4,2,2020,n,"]


def table(rng: random.Random, parts: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["note_id", "person_id", "note_date", "note_title", "note_text"])
    for i in range(1, 5):
        text = "".join(rng.choice(parts) for _ in range(rng.randint(0, 15)))
        w.writerow([i, i, "2020-01-01", "n", f"SECRET{WORDS[str(i)]} {text} SECRET{WORDS[str(i)]}"])
    data = buf.getvalue()
    head = data.index("\n") + 1
    for _ in range(rng.randint(0, 4)):
        what = rng.choice(['"', "", "\n", ","])
        pos = rng.randint(head, len(data) - 1)
        data = data[:pos] + what + data[pos + (0 if what else 1) :]
    return data


def leaks(folder: Path) -> tuple[int, int]:
    """(persons holding another person's word, persons holding their own word)."""
    n = kept = 0
    for sl in OmopCohort(folder).scan().slices:
        try:
            text = " ".join(e.text for e in sl.load().events)
        except (InputError, RagehrError):
            continue
        n += any(f"SECRET{w}" in text for pid, w in WORDS.items() if pid != sl.patient_id)
        kept += sl.patient_id in WORDS and f"SECRET{WORDS[sl.patient_id]}" in text
    return n, kept


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--row-shaped", action="store_true", help="notes also hold whole rows of another person")
    ap.add_argument("--expect-plain", type=int, default=None, help="tables with a leak expected (plain notes)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    parts = ROW_SHAPED if args.row_shaped else PLAIN
    bad = kept = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.n):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            (folder / "person.csv").write_text("person_id,year_of_birth\n1,1950\n2,1951\n3,1952\n4,1953\n")
            (folder / "note.csv").write_text(table(rng, parts))
            n, k = leaks(folder)
            bad += n > 0
            kept += k
    kind = "row-shaped" if args.row_shaped else "plain"
    print(
        f"{kind} notes: {bad} of {args.n} damaged tables put a person's text in another's record; "
        f"{kept} of {4 * args.n} persons' notes read as theirs (seed {args.seed})"
    )
    if args.expect_plain is not None and not args.row_shaped:
        ok = bad == args.expect_plain
        print(f"{'OK' if ok else 'FAIL'}: expected {args.expect_plain}")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
