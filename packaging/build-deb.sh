#!/usr/bin/env bash
# Build the Debian package: release binary, man page and shell completions
# generated from the clap definition, then `cargo deb --no-build`.
#
#   packaging/build-deb.sh                # -> target/debian/dbwarden_<version>-1_<arch>.deb
#   SKIP_BUILD=1 packaging/build-deb.sh   # reuse an existing release binary
#   packaging/build-deb.sh --output /tmp  # extra arguments go to `cargo deb`
#
# Needs cargo-deb (`cargo install cargo-deb --locked`) and dpkg-dev (dpkg-shlibdeps
# computes the package's shared-library dependencies). Prints the .deb's path last.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb.sh: cargo-deb is missing: cargo install cargo-deb --locked" >&2
    exit 1
fi

# The real target dir (CARGO_TARGET_DIR, .cargo/config.toml) as cargo sees it.
target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
target_dir=${target_dir:-$repo/target}
bin="$target_dir/release/dbwarden"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    locked=()
    [[ -f Cargo.lock ]] && locked=(--locked)
    cargo build --release "${locked[@]}" --bin dbwarden
fi
if [[ ! -x "$bin" ]]; then
    echo "build-deb.sh: no release binary at $bin" >&2
    exit 1
fi

# Generated assets. Cargo.toml's [package.metadata.deb] refers to them as
# target/assets/... relative to the crate root (only target/release/ is remapped
# by cargo-deb), so they go there whatever the target dir is.
assets="$repo/target/assets"
rm -rf "$assets"
mkdir -p "$assets"
"$bin" manpage > "$assets/dbwarden.1"
"$bin" completions bash > "$assets/dbwarden.bash"
"$bin" completions zsh > "$assets/_dbwarden"
"$bin" completions fish > "$assets/dbwarden.fish"
for f in dbwarden.1 dbwarden.bash _dbwarden dbwarden.fish; do
    if [[ ! -s "$assets/$f" ]]; then
        echo "build-deb.sh: generated $assets/$f is empty" >&2
        exit 1
    fi
done
if ! grep -q '^\.TH' "$assets/dbwarden.1"; then
    echo "build-deb.sh: $assets/dbwarden.1 is not a man page (no .TH line)" >&2
    exit 1
fi

size=$(stat -c %s "$bin")
echo "release binary: $bin, $size bytes ($(( (size + 524288) / 1048576 )) MiB; target <= 15 MB)" >&2

# cargo deb prints the path of the package it wrote.
cargo deb --no-build "$@"
