#!/usr/bin/env bash
# Builds Muster's packages into target/packages/:
#   muster-coordinator_VERSION_ARCH.deb and muster-agent_VERSION_ARCH.deb  (cargo-deb)
#   muster-coordinator-VERSION.ARCH.rpm and muster-agent-VERSION.ARCH.rpm  (cargo-generate-rpm)
# from [package.metadata.deb] and [package.metadata.generate-rpm] in coordinator/ and agent/
# Cargo.toml. Needs cargo-deb and cargo-generate-rpm (`bash .ci/setup` installs both).
# Usage: bash packaging/build.sh [deb|rpm]...   (default: both)
# MUSTER_PACKAGE_OUT=DIR puts them in DIR instead (and stages in DIR.stage), so that two builds
# can run side by side; MUSTER_PACKAGE_REVISION=N makes the .debs revision N (default 1), as the
# next revision of the same version would be.
# MUSTER_PACKAGE_PROFILE=dev packages the debug build, as it is, instead of making a release build
# (the tests do, to reuse the build they run on); the packages are the same but for the binaries'
# speed and size.
set -euo pipefail
cd "$(dirname "$0")/.."

formats=("$@")
((${#formats[@]})) || formats=(deb rpm)
profile=${MUSTER_PACKAGE_PROFILE:-release}
case "$profile" in
    release) bin=target/release deb_fast=() rpm_fast=() ;;
    # Tests: lighter compression too (the rpm's default zstd takes half a minute a package).
    dev) bin=target/debug deb_fast=(--fast) rpm_fast=(--payload-compress gzip) ;;
    *) echo "build: MUSTER_PACKAGE_PROFILE must be release or dev, not $profile" >&2; exit 2 ;;
esac

# The packaging tools, checked before the build (minutes) rather than after it.
source packaging/tool-versions
needs=()
for format in "${formats[@]}"; do
    case "$format" in
        deb) tool=cargo-deb pin=$cargo_deb ;;
        rpm) tool=cargo-generate-rpm pin=$cargo_generate_rpm ;;
        *) echo "build: unknown format $format (deb or rpm)" >&2; exit 2 ;;
    esac
    command -v "$tool" >/dev/null || needs+=("$tool@$pin")
done
if ((${#needs[@]})); then
    echo "build: missing ${needs[*]/@/ }: install with \`bash .ci/setup\` (all of CI's tools) or" >&2
    for need in "${needs[@]}"; do
        echo "  cargo install ${need%@*} --locked --version ${need#*@}" >&2
    done
    exit 1
fi

if [[ $profile == dev ]]; then
    # The tests package the build they run on, as it is: building here would relink binaries
    # that tests running beside this one are starting.
    for binary in muster-coordinator muster muster-agent; do
        [[ -x $bin/$binary ]] || {
            echo "build: $bin/$binary is missing: cargo build --workspace --bins first" >&2
            exit 1
        }
    done
else
    echo "build: binaries ($profile)"
    cargo build --profile "$profile" --locked --workspace --bins
fi

# What goes into the packages is staged in a target directory of its own, as a release build's:
# stripped copies of the binaries (the build's own stay whole) and the man pages and shell
# completions they make from their own --help. Both tools read it through CARGO_TARGET_DIR and
# find the assets' target/release/ paths there.
out=${MUSTER_PACKAGE_OUT:-$PWD/target/packages}
stage=${MUSTER_PACKAGE_OUT:+$out.stage}
stage=${stage:-target/package-bin}
revision=${MUSTER_PACKAGE_REVISION:-1}
[[ $revision =~ ^[0-9]+$ ]] || { echo "build: MUSTER_PACKAGE_REVISION must be a number, not $revision" >&2; exit 2; }
rm -rf "$stage"
mkdir -p "$stage/release"
for binary in muster-coordinator muster muster-agent; do
    cp "$bin/$binary" "$stage/release/"
    strip "$stage/release/$binary"
done
docs=$stage/release/package-docs
"$stage"/release/muster-coordinator generate-docs --out "$docs/coordinator"
"$stage"/release/muster generate-docs --out "$docs/coordinator"
"$stage"/release/muster-agent generate-docs --out "$docs/agent"
gzip -9n "$docs"/*/man/*.1

rm -rf "$out"
mkdir -p "$out"
for format in "${formats[@]}"; do
    for package in coordinator agent; do
        case "$format" in
            deb) CARGO_TARGET_DIR=$stage cargo deb --no-build --no-strip "${deb_fast[@]}" --deb-revision "$revision" --locked -p "muster-$package" --output "$out/" ;;
            rpm) cargo generate-rpm --target-dir "$stage" "${rpm_fast[@]}" -p "$package" --output "$out/" ;;
            *) echo "build: unknown format $format (deb or rpm)" >&2; exit 2 ;;
        esac
    done
done
ls -l "$out"
