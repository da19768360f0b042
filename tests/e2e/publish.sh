# troy publish and troy verify-manifest: a lab's served directory, signed,
# checked by OpenSSL itself (an outside verifier), and refusals that leave
# the served directory as it was.
source "$(dirname "$0")/common.sh"
command -v openssl >/dev/null || { echo "SKIP: openssl is missing"; exit 77; }

openssl genpkey -algorithm ed25519 -out lab.key 2>/dev/null
openssl pkey -in lab.key -pubout -out lab.pub
openssl genpkey -algorithm ed25519 -out other.key 2>/dev/null
openssl pkey -in other.key -pubout -out other.pub

python3 - <<'PY'
import random
rng = random.Random(5)
disk = bytearray(rng.randbytes(8 << 20))
open("v1.raw", "wb").write(disk)
for name in ("v2.raw", "v3.raw"):
    for _ in range(6):
        at = rng.randrange(0, (8 << 20) - 65536) & ~511
        disk[at:at + 4096] = rng.randbytes(4096)
    open(name, "wb").write(disk)
PY
"$TROY" capture v1.raw base.vhdx 2>/dev/null
"$TROY" diff base.vhdx v2.raw -o v2.avhdx 2>/dev/null
"$TROY" diff v2.avhdx v3.raw -o v3.avhdx 2>/dev/null
"$TROY" diff base.vhdx v3.raw -o stray.avhdx 2>/dev/null   # a child of v1, not of v2
mkdir served

id_of() { "$TROY" info --json "$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["chain"][0]["id"].lower())'; }
served_state() { (cd served && find . -type f | sort | xargs sha256sum); }

expect_exit 0 "$TROY" publish --dir served --key lab.key --name v1 --disk 'size=8388608  serial=LAB-*' base.vhdx
expect_exit 0 "$TROY" publish --dir served --key lab.key --name v2 v2.avhdx
expect_exit 0 "$TROY" publish --dir served --key lab.key --name v3 v3.avhdx
pass "base and two deltas published"

# The manifest's lines, independently of troy's parser.
read -r magic < served/manifest
[ "$magic" = "troy-manifest 1" ] || fail "first line: $magic"
grep -qx "disk-size 8388608" served/manifest || fail "no disk-size line"
grep -qx "version v1 base $(id_of base.vhdx)" served/manifest || fail "base line: $(cat served/manifest)"
grep -qx "disk size=8388608 serial=LAB-\*" served/manifest || fail "disk rule not normalized: $(cat served/manifest)"
for version in v2 v3; do
  line=$(grep "^version $version delta " served/manifest) || fail "no line for $version"
  read -r _ name _ from file size sum fp fp_size fp_sum id <<<"$line"
  cmp -s "served/$file" "$version.avhdx" || fail "$file is not a copy of $version.avhdx"
  [ "$size" = "$(stat -c %s "served/$file")" ] && [ "$sum" = "$(sha "served/$file")" ] || fail "$version: size or sha256"
  [ "$fp_size" = "$(stat -c %s "served/$fp")" ] && [ "$fp_sum" = "$(sha "served/$fp")" ] || fail "$version: fingerprint"
  [ "$id" = "$(id_of "$version.avhdx")" ] || fail "$version: image id"
done
grep -q "^version v3 delta v2 " served/manifest || fail "v3 is not a delta from v2"
pass "manifest lines: ids, files, sizes and sha256 as the files are"

# OpenSSL verifies the signature by itself.
base64 -d served/manifest.sig > sig.bin
openssl pkeyutl -verify -pubin -inkey lab.pub -rawin -in served/manifest -sigfile sig.bin >/dev/null ||
  fail "openssl does not verify manifest.sig"
pass "openssl pkeyutl verifies manifest.sig"

expect_exit 0 "$TROY" verify-manifest --key lab.pub served/manifest
[ ! -s "$WORK/stdout" ] || fail "verify-manifest printed something"
expect_exit 0 "$TROY" verify-manifest --key lab.pub --print served/manifest
cmp -s "$WORK/stdout" served/manifest || fail "--print does not give the manifest's bytes"
expect_exit 2 "$TROY" verify-manifest --key other.pub served/manifest
expect_error_line "manifest.sig" "does not match"
cp served/manifest tampered
sed -i 's/^disk-size 8388608/disk-size 8388609/' tampered
expect_exit 2 "$TROY" verify-manifest --key lab.pub --signature served/manifest.sig tampered
expect_error_line "does not match"
expect_exit 2 "$TROY" verify-manifest --key lab.pub --print --signature served/manifest.sig tampered
[ ! -s "$WORK/stdout" ] || fail "--print printed a manifest that did not verify"
expect_exit 2 "$TROY" verify-manifest --key lab.key served/manifest
expect_error_line "lab.key" "public"
pass "verify-manifest: silent when good; one error line for another key, a changed byte, a private key"

# A syntactically bad manifest, correctly signed, is refused too.
printf 'troy-manifest 1\ndisk-size 1\nversion v1 base 00\nversion v2 delta v0 a/b 1 %s a/c 1 %s 11\n' \
  "$(printf '%064d' 0)" "$(printf '%064d' 0)" > bad.manifest
openssl pkeyutl -sign -inkey lab.key -rawin -in bad.manifest | base64 -w0 > bad.manifest.sig
expect_exit 2 "$TROY" verify-manifest --key lab.pub bad.manifest
expect_error_line "bad.manifest" "line 4"
pass "a signed manifest with a bad line is refused, naming the line"

# Refusals leave the served directory exactly as it was.
before=$(served_state)
expect_exit 2 "$TROY" publish --dir served --key lab.key --name v4 stray.avhdx
expect_error_line "stray.avhdx" "not the id of the newest published version v3"
expect_exit 2 "$TROY" publish --dir served --key lab.key --name v3 v3.avhdx
expect_error_line "v3" "has that version already"
expect_exit 2 "$TROY" publish --dir served --key other.key --name v4 v3.avhdx
expect_error_line "refusing to sign over it"
expect_exit 2 "$TROY" publish --dir served --key lab.key --name 'v 4' v3.avhdx
expect_error_line "--name"
expect_exit 2 "$TROY" publish --dir served --key lab.key --name v4 --disk 'colour=red' v3.avhdx
expect_error_line "disk rule"
cp served/manifest manifest.good
sed -i 's/^disk size=8388608/disk size=8388607/' served/manifest
expect_exit 2 "$TROY" publish --dir served --key lab.key --name v4 v3.avhdx
expect_error_line "refusing to sign over it" "does not match"
cp manifest.good served/manifest
# Another publish, rollback or squash at work (it holds the served lock).
flock served/.publish.lock sleep 30 >/dev/null 2>&1 &
holder=$!
for _ in $(seq 50); do flock -n served/.publish.lock true && sleep 0.1 || break; done
expect_exit 2 "$TROY" publish --dir served --key lab.key --name v4 v3.avhdx
expect_error_line "served" "another troy publish, rollback or squash"
pkill -P $holder 2>/dev/null || true
kill $holder 2>/dev/null || true
wait $holder 2>/dev/null || true
[ "$(served_state)" = "$before" ] || fail "a refused publish changed the served directory"
pass "wrong parent, duplicate name, another key, bad name or rule, a hand-edited manifest, another publish at work: refused, nothing changed"

# What the payload does with it: the deltas and fingerprints bring a base disk to v3.
cp v1.raw disk.raw
for version in v2 v3; do
  [ "$("$TROY" fingerprint --check "served/versions/$version.fingerprint" disk.raw)" = base ] || fail "check $version"
  expect_exit 0 "$TROY" apply --yes --base-hashes "served/versions/$version.fingerprint" \
    "served/versions/$version.avhdx" disk.raw
done
cmp -s disk.raw v3.raw || fail "the published deltas do not bring v1 to v3"
[ "$("$TROY" fingerprint --check served/versions/v3.fingerprint disk.raw)" = new ] || fail "check after apply"
pass "the published deltas and fingerprints bring a v1 disk to v3 with only the served files"

echo "publish: $CHECKS checks passed"
