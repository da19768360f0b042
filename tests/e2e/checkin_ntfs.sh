# Teacher check-in from a native-VHD-boot teacher machine (docs/checkin.md),
# as the payload runs it (troy.then=checkin: troy checkin --cmdline): the
# lab disk by the manifest's disk rule, its NTFS partition (mkntfs on an
# image file) by the layout vhdboot rule, mounted with ntfs-3g, the child
# and the machine's state file beside BASE taken from there; uploaded to a
# real lighttpd, and the partition unmounted afterwards.
source "$(dirname "$0")/common.sh"
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (mount)"; exit 77; }
for tool in lighttpd openssl curl mkntfs ntfs-3g ntfscp; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is missing (bash scripts/install-deps.sh)"; exit 77; }
done
[ -e /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 77; }

MiB=1048576
DISK_SIZE=$((16 * MiB))
TEACHER=52:54:00:00:00:01
make_lab_images 16 41
: > "$SERVED/boot/vmlinuz"
"$TROY" publish --dir "$SERVED" --key lab.key --name v1 --disk "size=$((DISK_SIZE + MiB))" base.vhdx 2>/dev/null
"$TROY" publish --dir "$SERVED" --key lab.key --name v2 v2.avhdx 2>/dev/null
echo "$TEACHER  R1-00  +teacher" > hosts
start_lab_server --hosts hosts --inbox "$WORK/inbox"

# The teacher machine reports once (a raw-disk update): its key is enrolled
# and its state record written after the image; the record is the same
# bytes in the state file a native-VHD-boot machine keeps beside BASE.
mkdir -p sys/block/vda/vda1 sys/class/net/eth0 dev
echo $(((DISK_SIZE + MiB) / 512)) > sys/block/vda/size
echo "$TEACHER" > sys/class/net/eth0/address
echo up > sys/class/net/eth0/operstate
dd if=v1.raw of=dev/vda bs=1M status=none && truncate -s $((DISK_SIZE + 2 * MiB)) dev/vda
"$TROY" update --server "$SERVER" --key lab.pub --sysfs sys --dev dev --work work --yes 2>update.log ||
  { cat update.log >&2; fail "the teacher machine's first update failed"; }
dd if=dev/vda of=troy-state bs=1M skip=16 count=1 status=none

# The lab becomes a native-VHD-boot lab; the teacher's NTFS partition holds
# its child of v2 and its state file.
"$TROY" publish --dir "$SERVED" --key lab.key --renew --vhd-boot number=1 troy/base.vhdx troy/student.vhdx 2>/dev/null ||
  fail "publish --renew --vhd-boot failed"
cp v2.raw teacher.raw
head -c $((2 * MiB)) /dev/urandom | dd of=teacher.raw bs=64K seek=50 conv=notrunc status=none
"$TROY" diff v2.avhdx teacher.raw -o student.avhdx 2>/dev/null
truncate -s 48M dev/vda1
mkntfs -F -Q -q -L TROY dev/vda1 >/dev/null 2>&1
mkdir mnt && ntfs-3g dev/vda1 mnt && mkdir mnt/troy && cp student.avhdx mnt/troy/student.vhdx && cp troy-state mnt/troy/ && umount mnt
echo 1 > sys/block/vda/vda1/partition
echo $((48 * MiB / 512)) > sys/block/vda/vda1/size
echo "BOOT_IMAGE=vmlinuz troy.server=$SERVER troy.then=checkin troy.wait=0" > cmdline

"$TROY" checkin --cmdline cmdline --key lab.pub --machine "$TEACHER" --sysfs sys --dev dev --mount-dir "$WORK/ntfs" \
  2>out.log || { cat out.log >&2; fail "the payload's check-in failed"; }
grep -q "partition: dev/vda1 matches number=1" out.log && grep -q "checked in as" out.log ||
  { cat out.log >&2; fail "the check-in does not say the partition it mounted and the entry"; }
mountpoint -q "$WORK/ntfs" && fail "the partition is still mounted"
cmp -s "$(ls "$WORK"/inbox/*.avhdx)" student.avhdx || fail "the inbox does not hold the teacher's child"
pass "troy checkin --cmdline: disk and NTFS partition by the manifest's rules, the child and the state file from it, uploaded, unmounted"

"$TROY" lab checkin publish "$(basename "$(ls "$WORK"/inbox/*.avhdx)" .avhdx)" --name v3 --key lab.key --served "$SERVED" \
  --inbox "$WORK/inbox" 2>out.log || { cat out.log >&2; fail "publishing the payload's check-in failed"; }
grep -q '^version v3 delta v2 ' "$SERVED/manifest" && grep -q '^layout vhdboot ' "$SERVED/manifest" ||
  fail "v3 is not published in the native-VHD-boot lab"
pass "published as v3; the manifest keeps its layout vhdboot line"

finish
