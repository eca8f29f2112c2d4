#!/bin/sh
# Every C file of the tree is formatted by the root's .clang-format (the frozen
# copy of an old ABI header under tests/plugins/abi-* stays as it was).
# Exit 77 (meson's "skipped") when clang-format is not installed.
set -eu
cd "$(dirname "$0")/../.."
command -v clang-format >/dev/null 2>&1 || { echo "clang-format not installed: skipped"; exit 77; }
files=$(find core plugins push tests contrib include -name '*.[ch]' -not -path '*/abi-*/*' | sort)
# shellcheck disable=SC2086
if ! clang-format --dry-run --Werror $files; then
    echo "format differs: run  clang-format -i \$(find core plugins push tests contrib include -name '*.[ch]' -not -path '*/abi-*/*')" >&2
    exit 1
fi
echo "$(echo "$files" | wc -l) files formatted"
