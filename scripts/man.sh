#!/usr/bin/env bash
# Writes troy's manual pages from its own --help (help2man): troy.1, and one
# page per subcommand and per `troy lab` subcommand (troy-info.1,
# troy-lab-status.1, ...), so the pages list exactly what the binary has.
# CMake's install runs it (make install, the Debian package); lab.conf.5 and
# troy-lab.8 are written by hand (man/).
#   scripts/man.sh TROY OUTDIR
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 TROY OUTDIR" >&2; exit 2; }
troy=$(realpath "$1") out=$2
command -v help2man >/dev/null || { echo "scripts/man.sh: help2man is missing (apt-get install help2man)" >&2; exit 2; }
mkdir -p "$out"
rm -f "$out"/*.1   # a subcommand removed since: its page too
# help2man runs `troy ...`, found in PATH, so the pages say troy, not a build path.
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
ln -s "$troy" "$bin/troy"
export PATH="$bin:$PATH"

# subcommands WORD...: "name<TAB>description" lines from `troy WORD... --help`.
subcommands() {
  troy "$@" --help | awk '/^[A-Z][A-Za-z ]*:$/ { section = $0; next }
    section == "Subcommands:" && /^  [a-z]/ { name = $1; sub(/^  [^ ]+ +/, ""); print name "\t" $0 }'
}
page() {  # PAGE DESCRIPTION WORD...
  local page=$1 description=$2
  shift 2
  help2man --no-info --section 1 --source "troy $(troy --version | awk '{ print $2 }')" --manual "Troy" \
    --name "$description" --help-option "$* --help" --version-option --version \
    --include <(printf '[SEE ALSO]\ntroy(1), lab.conf(5), troy-lab(8); the README in /usr/share/doc/troy\n') \
    --output "$out/$page.1" troy
  # help2man names every page troy: the page's own name instead (troy-lab-status).
  local upper=${page^^}
  sed -i -e "s/^\.TH TROY /.TH ${upper//-/\\-} /" -e "0,/^troy \\\\- /s//${page//-/\\\\-} \\\\- /" "$out/$page.1"
}

page troy "keeps a lab's Windows disks up to date from Linux"
while IFS=$'\t' read -r name description; do
  page "troy-$name" "$description" "$name"
  while IFS=$'\t' read -r child child_description; do
    page "troy-$name-$child" "$child_description" "$name" "$child"
  done < <(subcommands "$name")
done < <(subcommands)
echo "scripts/man.sh: $(ls "$out" | wc -l) pages in $out" >&2
