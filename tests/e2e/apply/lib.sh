# Helpers of the apply_*.sh cases (sourced after common.sh; this folder is
# not globbed as cases).

# A raw disk of SIZE_MIB MiB with random runs in about half of its 1 MiB
# blocks, holes elsewhere, data in the last sector.
make_disk() {
  python3 - "$1" "$2" "$3" <<'PY'
import os, random, sys
path, mib, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
size = mib << 20
with open(path, "wb") as f:
    f.truncate(size)
    for block in range(mib):
        if rng.random() < 0.5:
            for _ in range(rng.randint(1, 3)):
                at = (block << 20) + 512 * rng.randint(0, 2047)
                f.seek(at)
                f.write(os.urandom(min(512 * rng.randint(1, 600), size - at)))
    f.seek(size - 512)
    f.write(os.urandom(512))
PY
}

# A copy of a raw disk with COUNT scattered runs rewritten (some across 1 MiB
# boundaries) and one 2 MiB-aligned 2 MiB block zeroed (a VHDX child stores
# it as a ZERO block), as the teacher's next state.
make_changed() {
  cp --sparse=always "$1" "$2"
  python3 - "$2" "$3" "$4" <<'PY'
import os, random, sys
path, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
size = os.path.getsize(path)
with open(path, "r+b") as f:
    for i in range(count):
        length = 512 * rng.randint(1, 3000)
        at = 512 * rng.randrange(size // 512)
        if i == 0:
            at = (1 << 20) - 4096
        f.seek(at)
        f.write(os.urandom(min(length, size - at)))
    f.seek(4 << 20)
    f.write(bytes(2 << 20))
PY
}

# The value of a numeric or string field of a flat JSON report.
json_field() {
  python3 -c 'import json, sys; v = json.load(open(sys.argv[1]))[sys.argv[2]]; print("null" if v is None else v)' "$1" "$2"
}

# Runs troy apply expecting success; stderr in $WORK/stderr.
apply_ok() {
  "$TROY" apply "$@" 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; fail "troy apply $* failed"; }
}

expect_same() {  # FILE EXPECTED LABEL
  cmp -s "$1" "$2" || fail "$3: $1 differs from $2 (first difference: $(cmp "$1" "$2" 2>&1 | head -1))"
}

# Bytes in the 512-byte sectors where two raw files differ.
changed_sector_bytes() {
  python3 - "$1" "$2" <<'PY'
import sys
a, b = (open(p, "rb").read() for p in sys.argv[1:3])
print(512 * sum(a[i:i + 512] != b[i:i + 512] for i in range(0, len(a), 512)))
PY
}
