#!/usr/bin/env bash
# Rebuilds guest-sdk/typescript/engine.wasm, the JavaScript engine of TypeScript modules, from
# guest-sdk/typescript/engine (QuickJS through rquickjs, for wasm32-wasip1).
#
# Needs clang with the wasm32 backend and wasi-libc's headers (Debian/Ubuntu:
# `apt-get install clang lld wasi-libc`). Reproducible: locked dependencies, fixed flags, the
# build paths remapped, so the same sources give the same bytes on any machine with the same
# toolchain versions. `--check` rebuilds into a temporary file and fails when it differs from
# the committed engine.wasm (what CI runs).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
engine="$here/engine"
out="$here/engine.wasm"
check=0
[[ "${1:-}" == "--check" ]] && check=1

sysroot="${WASI_SYSROOT:-}"
if [[ -z "$sysroot" ]]; then
  for candidate in /usr/include/wasm32-wasi /usr/share/wasi-sysroot/include/wasm32-wasi /usr/share/wasi-sysroot/include; do
    if [[ -f "$candidate/stdlib.h" ]]; then sysroot="$candidate"; break; fi
  done
fi
if [[ -z "$sysroot" ]] || ! command -v clang >/dev/null; then
  echo "build-engine: needs clang and wasi-libc headers (apt-get install clang lld wasi-libc)" >&2
  exit 2
fi
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
target_dir="${ENGINE_TARGET_DIR:-$engine/target}"
# Cargo's crate hashes (and so symbol names, and so the order of the linked imports) include
# the absolute path of a path dependency: the sources are copied to one fixed path and built
# there, so every checkout, wherever it is, builds the same bytes. One build at a time.
src=/tmp/firefly-js-engine-src
exec 9>/tmp/firefly-js-engine-src.lock
flock 9
rm -rf "$src"
mkdir -p "$src/guest-sdk/typescript/engine"
cp -r "$here/../abi" "$src/guest-sdk/abi"
# What firefly-abi inherits from the root workspace: its package fields and lints.
{
  printf '[workspace]\nmembers = ["guest-sdk/abi"]\nexclude = ["guest-sdk/typescript/engine"]\n\n'
  awk '/^\[/ { keep = ($0 ~ /^\[workspace\.(package|lints)/) } keep' "$here/../../Cargo.toml"
} > "$src/Cargo.toml"
cp -r "$engine/Cargo.toml" "$engine/Cargo.lock" "$engine/src" "$src/guest-sdk/typescript/engine/"
engine="$src/guest-sdk/typescript/engine"
abi="$src/guest-sdk/abi"
# rquickjs-sys would download a wasi-sdk otherwise; the system clang and headers do.
export RQUICKJS_SYS_NO_WASI_SDK=1
export CC_wasm32_wasip1=clang
export AR_wasm32_wasip1="$(command -v llvm-ar || ls /usr/bin/llvm-ar-* | head -1)"
export CFLAGS_wasm32_wasip1="--target=wasm32-wasi -isystem $sysroot -O2 -ffile-prefix-map=$cargo_home=/cargo -ffile-prefix-map=$engine=/engine -ffile-prefix-map=$target_dir=/target"
export RUSTFLAGS="--remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$target_dir=/target --remap-path-prefix=$engine=/engine --remap-path-prefix=$abi=/abi -C link-arg=-zstack-size=1048576"
export SOURCE_DATE_EPOCH=0
cargo build --locked --release --target wasm32-wasip1 --manifest-path "$engine/Cargo.toml" --target-dir "$target_dir"
built="$target_dir/wasm32-wasip1/release/firefly_js_engine.wasm"
if [[ $check == 1 ]]; then
  if cmp -s "$built" "$out"; then
    echo "build-engine: engine.wasm is up to date ($(stat -c %s "$out") bytes)"
  else
    echo "build-engine: engine.wasm differs from a rebuild of guest-sdk/typescript/engine: run guest-sdk/typescript/build-engine.sh and commit the result" >&2
    exit 1
  fi
else
  cp "$built" "$out"
  echo "build-engine: wrote $out ($(stat -c %s "$out") bytes)"
fi
