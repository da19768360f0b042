# --keep-partition N and --exclude OFFSET:LENGTH leave ranges untouched, so
# a user-data partition survives a rollout: the partition is found in the
# image's own table (MBR with a logical partition, and GPT), its bytes on
# the target stay identical (the user's data differs from the image's there,
# and that is no reason to refuse), and everything else is the new state.
source "$(dirname "$0")/common.sh"
source "$ROOT/tests/e2e/apply/lib.sh"

# partitioned DISK SCHEME: a 32 MiB disk with a table naming the partitions
# "system" 1 MiB..16 MiB and "data" 16 MiB..31 MiB (number 2 in GPT; in MBR
# the logical partition 5 inside extended partition 2), random data in both.
partitioned() {
  python3 - "$1" "$2" <<'PY'
import os, struct, sys, zlib
path, scheme = sys.argv[1], sys.argv[2]
size, MiB = 32 << 20, 1 << 20
disk = bytearray(size)
def mbr_entry(record, i, kind, first, count):
    struct.pack_into("<B3xB3xII", disk, record + 446 + 16 * i, 0, kind, first, count)
    disk[record + 510:record + 512] = b"\x55\xaa"
if scheme == "mbr":
    mbr_entry(0, 0, 0x07, 2048, 30720 - 2048)
    mbr_entry(0, 1, 0x0f, 30720, 63488 - 30720)             # extended: 15 MiB..31 MiB
    mbr_entry(30720 * 512, 0, 0x07, 2048, 63488 - 32768)   # logical 5: 16 MiB..31 MiB
else:
    mbr_entry(0, 0, 0xee, 1, size // 512 - 1)
    entries = bytearray(128 * 128)
    for i, (first, last) in enumerate([(2048, 32767), (32768, 63487)]):
        struct.pack_into("<16s16sQQ", entries, 128 * i, os.urandom(16), os.urandom(16), first, last)
    header = struct.pack("<8sIIIIQQQQ16sQIII", b"EFI PART", 0x10000, 92, 0, 0, 1, size // 512 - 1, 34,
                         size // 512 - 34, os.urandom(16), 2, 128, 128, zlib.crc32(entries))
    disk[512:512 + 92] = header
    disk[1024:1024 + len(entries)] = entries
for start, end in [(1 * MiB, 15 * MiB), (15 * MiB + 512, 31 * MiB)]:   # not the EBR sector at 15 MiB
    for at in range(start, end, 256 << 10):
        disk[at:at + (64 << 10)] = os.urandom(64 << 10)
open(path, "wb").write(disk)
PY
}

# keep_table FROM TO: copies the table's sectors (MBR, GPT header and
# entries, the EBR at 15 MiB) from FROM into TO.
keep_table() {
  dd if="$1" of="$2" bs=512 count=34 conv=notrunc status=none
  dd if="$1" of="$2" bs=512 skip=30720 seek=30720 count=1 conv=notrunc status=none
}

for scheme in mbr gpt; do
  keep=$([ $scheme = mbr ] && echo 5 || echo 2)
  partitioned state1.raw $scheme
  make_changed state1.raw state2.raw 40 61   # changes everywhere, both partitions included,
  keep_table state1.raw state2.raw           # but not in the partition table
  "$TROY" capture --overwrite --block-size 1M state1.raw base.vhdx 2>/dev/null
  "$TROY" diff --overwrite base.vhdx state2.raw -o monday.avhdx 2>/dev/null
  # The classroom disk: the base, with the user's own files in the data partition.
  cp state1.raw target.raw
  head -c $((1 << 20)) /dev/urandom | dd of=target.raw bs=1M seek=20 conv=notrunc status=none
  dd if=target.raw of=data.before bs=1M skip=16 count=15 status=none
  apply_ok monday.avhdx target.raw --keep-partition "$keep" --report report.json
  dd if=target.raw of=data.after bs=1M skip=16 count=15 status=none
  cmp -s data.before data.after || fail "$scheme: partition $keep changed"
  cmp -s <(head -c $((16 << 20)) target.raw) <(head -c $((16 << 20)) state2.raw) || fail "$scheme: the system part is not the new state"
  cmp -s <(tail -c $((1 << 20)) target.raw) <(tail -c $((1 << 20)) state2.raw) || fail "$scheme: the last MiB is not the new state"
  [ "$(json_field report.json excluded_bytes)" -gt 0 ] || fail "$scheme: nothing excluded"
  pass "$scheme: --keep-partition $keep leaves the user's partition byte-identical, the rest is the new state"

  # The same with --full and with the partition given as --exclude.
  cp target.raw full.raw
  head -c $((1 << 20)) /dev/urandom | dd of=full.raw bs=1M seek=2 conv=notrunc status=none
  apply_ok monday.avhdx full.raw --full --exclude 16M:15M
  dd if=full.raw of=data.after bs=1M skip=16 count=15 status=none
  cmp -s data.before data.after || fail "$scheme: --full --exclude changed the excluded range"
  cmp -s <(head -c $((16 << 20)) full.raw) <(head -c $((16 << 20)) state2.raw) || fail "$scheme: --full: the system part differs"
  pass "$scheme: --full --exclude 16M:15M rewrites everything but that range"
done

# Without the parent, the table is read from the delta over the target.
mkdir payload && cp monday.avhdx payload/ && "$TROY" fingerprint monday.avhdx -o monday.fp 2>/dev/null && rm base.vhdx
cp state1.raw target.raw
head -c $((1 << 20)) /dev/urandom | dd of=target.raw bs=1M seek=20 conv=notrunc status=none
dd if=target.raw of=data.before bs=1M skip=16 count=15 status=none
apply_ok payload/monday.avhdx target.raw --base-hashes monday.fp --keep-partition 2
dd if=target.raw of=data.after bs=1M skip=16 count=15 status=none
cmp -s data.before data.after || fail "--base-hashes --keep-partition 2: the partition changed"
pass "with only the delta and its fingerprint, --keep-partition 2 still keeps the partition"
finish
