# troy relink makes a child name the parent it is given, locators and all
# (issue 25), and the commands that read or write a chain say which file each
# parent is. For VHD and VHDX: a teacher's delta copied beside a copy of its
# base, re-linked and merged into that copy while the original stays
# byte-for-byte the same; a child whose parent is missing, re-linked, then
# moved with its parent and read again; a child whose locators name two
# files with its parent's id, which merge refuses naming both; a Hyper-V
# volume_path that relink removes. qemu-img opens every re-linked image.
source "$(dirname "$0")/common.sh"
command -v qemu-img >/dev/null || fail "qemu-img not installed (make deps)"
PY=/usr/bin/python3
SPEC_READ="$PY $ROOT/fixtures/spec_read.py"
M=1048576

run_troy() {
  "$TROY" "$@" >"$WORK/stdout" 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; fail "troy $*"; }
}

# said TEXT...: the last command's stderr holds each TEXT.
said() {
  for text in "$@"; do
    grep -qF -- "$text" "$WORK/stderr" || { cat "$WORK/stderr" >&2; fail "stderr does not say '$text'"; }
  done
}

# reads_as IMAGE RAW: troy convert reads IMAGE's chain as RAW.
reads_as() {
  run_troy convert "$1" "$WORK/read.raw" --overwrite
  cmp -s "$WORK/read.raw" "$2" || fail "$1 does not read as $2"
  rm -f "$WORK/read.raw"
}

# snapshot DIR: every file under DIR with its sha256.
snapshot() { (cd "$1" && find . -type f -printf '%P\n' | LC_ALL=C sort | while read -r f; do echo "$f $(sha "$f")"; done); }

# qemu_opens FORMAT IMAGE: qemu-img accepts a re-linked child. qemu opens no
# differencing VHDX (HasParent, or the required Parent Locator item: ENOTSUP)
# and checks no VHD, so a VHDX child is checked as a copy without both
# (headers, region tables, metadata table, log, BAT: all that relink touches
# but the locator, which troy and spec_read.py read), and a VHD child is
# opened (its footer and header checksums).
qemu_opens() {
  if [ "$1" = vhd ]; then
    qemu-img info -f vpc "$2" >/dev/null || fail "qemu-img cannot open $2"
    return
  fi
  cp "$2" "$WORK/qemu.vhdx"
  $PY - "$ROOT/fixtures" "$WORK/qemu.vhdx" <<'PY' || fail "cannot clear HasParent in a copy of $2"
import struct, sys
sys.path.insert(0, sys.argv[1])
import make_vhdx as m
f = m.VhdxFile(sys.argv[2])
entry = f.find_item(m.FILE_PARAMETERS)
block, flags = struct.unpack("<II", f.item(m.FILE_PARAMETERS))
assert flags & m.HAS_PARENT, "not a differencing image"
f.write(f.meta_offset + entry[1] + 4, struct.pack("<I", flags & ~m.HAS_PARENT))
f.items = [e for e in f.items if e[0] != m.PARENT_LOCATOR.bytes_le]
f.write_metadata_table()
PY
  qemu-img check -q -f vhdx "$WORK/qemu.vhdx" || fail "qemu-img check: $2 (HasParent cleared)"
  rm -f "$WORK/qemu.vhdx"
}

make_random_raw old.raw $((6 * M)) 11
cp old.raw new.raw
head -c $((64 * 1024)) /dev/urandom | dd of=new.raw bs=512 seek=2049 conv=notrunc status=none
head -c 4096 /dev/urandom | dd of=new.raw bs=512 seek=$((5 * 2048 + 8)) conv=notrunc status=none
dd if=/dev/zero of=new.raw bs=512 seek=100 count=16 conv=notrunc status=none

for fmt in vhd vhdx; do
  ext=$([ "$fmt" = vhd ] && echo vhd || echo avhdx)
  rel=$([ "$fmt" = vhd ] && echo W2ru || echo relative_path)
  mkdir -p "$fmt" && cd "$fmt"

  # 1. The issue: the delta made against ../images/master, copied beside a
  # copy of that base in another folder of the same lab.
  mkdir -p lab/images lab/teacher lab/VHD
  run_troy capture ../old.raw "lab/images/master.$fmt"
  run_troy diff "lab/images/master.$fmt" ../new.raw -o "lab/teacher/delta.$ext"
  cp "lab/images/master.$fmt" "lab/VHD/base.$fmt"
  cp "lab/teacher/delta.$ext" "lab/VHD/delta.$ext"
  master=$(realpath "lab/images/master.$fmt")
  base=$(realpath "lab/VHD/base.$fmt")
  master_sha=$(sha "$master")
  # Before: merge names, first, the file its locators lead to.
  run_troy merge "lab/VHD/delta.$ext" --dry-run
  head -n 1 "$WORK/stderr" | grep -qF "into $master (dry run" || { cat "$WORK/stderr" >&2; fail "$fmt: merge does not name $master first"; }
  said "parent of lab/VHD/delta.$ext: $master (found by its $rel locator)"
  run_troy relink "lab/VHD/delta.$ext" "lab/VHD/base.$fmt"
  said "already had" "rewrote them" "$rel" "became"
  grep -q "nothing changed" "$WORK/stderr" && fail "$fmt: relink that rewrote the locators says nothing changed"
  pass "$fmt: relink to a same-id copy rewrites the locators and says so"
  relinked_sha=$(sha "lab/VHD/delta.$ext")
  run_troy relink "lab/VHD/delta.$ext" "lab/VHD/base.$fmt"
  said "nothing changed"
  [ "$(sha "lab/VHD/delta.$ext")" = "$relinked_sha" ] || fail "$fmt: a relink that changed nothing changed the file"
  pass "$fmt: a second relink changes nothing and says so"
  run_troy info "lab/VHD/delta.$ext"
  grep -qF "parent file: $base" "$WORK/stdout" || { cat "$WORK/stdout" >&2; fail "$fmt: info does not show $base"; }
  grep '^       locator' "$WORK/stdout" | grep -q master && fail "$fmt: a locator still names master.$fmt"
  run_troy info --json "lab/VHD/delta.$ext"
  $PY - "$WORK/stdout" "$base" <<'PY' || fail "$fmt: info --json does not give the parent's path"
import json, sys
link = json.load(open(sys.argv[1]))["chain"][1]["link"]
assert link["path"] == sys.argv[2] and link["same_id_elsewhere"] == [], link
PY
  run_troy check "lab/VHD/delta.$ext"
  qemu_opens "$fmt" "lab/VHD/delta.$ext"
  $SPEC_READ spec.raw "lab/VHD/delta.$ext" "lab/VHD/base.$fmt" || fail "spec_read.py cannot read the re-linked $fmt chain"
  cmp -s spec.raw ../new.raw || fail "spec_read.py: the re-linked $fmt chain differs from new.raw"
  rm -f spec.raw
  pass "$fmt: the re-linked child passes troy check, qemu-img and spec_read.py"
  # convert and apply name the parent they read.
  reads_as "lab/VHD/delta.$ext" ../new.raw
  said "parent of lab/VHD/delta.$ext: $base (found by its $rel locator)"
  cp ../old.raw disk.raw
  run_troy apply "lab/VHD/delta.$ext" disk.raw
  said "parent of lab/VHD/delta.$ext: $base"
  cmp -s disk.raw ../new.raw || fail "$fmt: apply over the re-linked chain differs from new.raw"
  rm -f disk.raw
  pass "$fmt: convert and apply say which file the parent is"
  # The merge writes the copy the admin named, and says so first.
  run_troy merge "lab/VHD/delta.$ext"
  head -n 1 "$WORK/stderr" | grep -qF "troy: merging $(realpath "lab/VHD/delta.$ext") into $base" ||
    { cat "$WORK/stderr" >&2; fail "$fmt: merge does not name $base in its first line"; }
  [ "$(sha "$master")" = "$master_sha" ] || fail "$fmt: merge changed $master, which no command named"
  reads_as "lab/VHD/base.$fmt" ../new.raw
  qemu-img convert -f "$([ "$fmt" = vhd ] && echo vpc || echo vhdx)" -O raw "lab/VHD/base.$fmt" qemu.raw
  cmp -s qemu.raw ../new.raw || fail "qemu-img: the merged $fmt base differs from new.raw"
  rm -f qemu.raw
  if [ "$fmt" = vhdx ]; then qemu-img check -q -f vhdx "lab/VHD/base.vhdx" || fail "qemu-img check: merged base.vhdx"; fi
  pass "$fmt: merge after relink writes base.$fmt; master.$fmt is byte-for-byte unchanged"

  # 2. The pair copied to a machine where the old parent's paths name
  # nothing: relink a child whose locators name a missing parent.
  mkdir -p far/vm far/img
  cp "lab/teacher/delta.$ext" far/vm/
  cp "$master" "far/img/base.$fmt"
  mv lab lab.gone
  expect_exit 2 "$TROY" info "far/vm/delta.$ext"
  expect_error_line "parent not found" "troy relink"
  run_troy relink "far/vm/delta.$ext" "far/img/base.$fmt"
  said "rewrote them"
  run_troy info "far/vm/delta.$ext"
  grep -qF "locator $rel: ..\\img\\base.$fmt" "$WORK/stdout" || { cat "$WORK/stdout" >&2; fail "$fmt: the relative locator is not ..\\img\\base.$fmt"; }
  reads_as "far/vm/delta.$ext" ../new.raw
  qemu_opens "$fmt" "far/vm/delta.$ext"
  pass "$fmt: a child whose parent is missing is re-linked and reads over the new one"
  # 3. Both moved together: found again by the relative locator alone.
  mkdir moved && mv far moved/far
  run_troy info "moved/far/vm/delta.$ext"
  grep -qF "parent found by $rel locator; link verified" "$WORK/stdout" || { cat "$WORK/stdout" >&2; fail "$fmt: moved pair not found by $rel"; }
  grep -qF "parent file: $(realpath "moved/far/img/base.$fmt")" "$WORK/stdout" || fail "$fmt: moved pair: wrong parent file"
  reads_as "moved/far/vm/delta.$ext" ../new.raw
  pass "$fmt: re-linked child and parent moved together still read"
  rm -rf lab.gone moved

  # 4. Two same-id files: made beside B's base, the child moved beside a
  # copy in A. Its relative locator names A's, its absolute one B's.
  mkdir -p amb/A amb/B
  run_troy capture ../old.raw "amb/B/base.$fmt"
  run_troy diff "amb/B/base.$fmt" ../new.raw -o "amb/B/child.$ext"
  cp "amb/B/base.$fmt" "amb/A/base.$fmt"
  mv "amb/B/child.$ext" "amb/A/child.$ext"
  a=$(realpath "amb/A/base.$fmt")
  b=$(realpath "amb/B/base.$fmt")
  before=$(snapshot amb)
  for dry in "" --dry-run; do
    expect_exit 2 "$TROY" merge "amb/A/child.$ext" $dry
    expect_error_line "$a" "$b" "troy relink"
    [ "$(wc -l <"$WORK/stderr")" = 1 ] || { cat "$WORK/stderr" >&2; fail "$fmt: refused merge: more than one line"; }
  done
  [ "$(snapshot amb)" = "$before" ] || fail "$fmt: a refused merge changed files"
  pass "$fmt: merge refuses a child whose locators name two same-id files, naming both"
  run_troy info "amb/A/child.$ext"
  grep -qF "same id also at: $b" "$WORK/stdout" || { cat "$WORK/stdout" >&2; fail "$fmt: info does not show $b"; }
  said "warning" "$a" "$b"
  reads_as "amb/A/child.$ext" ../new.raw
  said "warning"
  pass "$fmt: reads warn about the two same-id files and go on"
  run_troy relink "amb/A/child.$ext" "amb/A/base.$fmt"
  said "rewrote them"
  b_sha=$(sha "$b")
  run_troy merge "amb/A/child.$ext"
  head -n 1 "$WORK/stderr" | grep -qF "into $a" || { cat "$WORK/stderr" >&2; fail "$fmt: merge does not name $a first"; }
  [ "$(sha "$b")" = "$b_sha" ] || fail "$fmt: merge changed $b"
  reads_as "amb/A/base.$fmt" ../new.raw
  pass "$fmt: once re-linked, merge writes the named copy only"
  cd "$WORK"
done

# 5. A Hyper-V style child (make_vhdx.py: relative_path, volume_path and
# absolute_win32_path): relink to a copy beside it removes the volume_path,
# which still names the old file.
$MAKE_VHDX chain hv --seed 4 --layers 1 --subdir >/dev/null
cp hv/parents/base.vhdx hv/copy.vhdx
run_troy relink hv/layer1.avhdx hv/copy.vhdx
said "volume_path" "removed"
run_troy info hv/layer1.avhdx
grep -q "volume_path" "$WORK/stdout" && fail "the volume_path locator is still there"
reads_as hv/layer1.avhdx hv/layer1.raw
qemu_opens vhdx hv/layer1.avhdx
pass "vhdx: relink removes a volume_path that names another file"
finish
