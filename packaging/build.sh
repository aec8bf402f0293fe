#!/usr/bin/env bash
# Builds Muster's packages into target/packages/:
#   muster-coordinator_VERSION_ARCH.deb and muster-agent_VERSION_ARCH.deb  (cargo-deb)
#   muster-coordinator-VERSION.ARCH.rpm and muster-agent-VERSION.ARCH.rpm  (cargo-generate-rpm)
# from [package.metadata.deb] and [package.metadata.generate-rpm] in coordinator/ and agent/
# Cargo.toml. Needs cargo-deb and cargo-generate-rpm (`bash .ci/setup` installs both).
# Usage: bash packaging/build.sh [deb|rpm|repo]...   (default: deb rpm)
# `repo` also lays both formats out as package repositories in OUT/repo/, signed with the GPG key
# MUSTER_REPO_KEY (a fingerprint or key id in gpg's keyring; GNUPGHOME picks another keyring):
#   repo/deb/            a flat apt repository: the .debs, Packages(.gz), Release, InRelease and
#                        Release.gpg (apt-ftparchive, from Debian's apt-utils)
#   repo/rpm/            a yum/dnf repository: the .rpms and repodata/ (createrepo_c, Debian's
#                        createrepo-c), its repomd.xml signed in repomd.xml.asc
#   repo/muster-archive-keyring.gpg  the public key for apt's signed-by= (.asc: armoured, for dnf)
#   repo/muster.list, repo/muster.repo  the source entries, with BASE_URL for where it is served
# Serve repo/ with any web server (or use it as a file: URI); the fingerprint is printed last.
# MUSTER_PACKAGE_OUT=DIR puts them in DIR instead (and stages in DIR.stage), so that two builds
# can run side by side; MUSTER_PACKAGE_REVISION=N makes the .debs revision N (default 1), as the
# next revision of the same version would be.
# MUSTER_PACKAGE_PROFILE=dev packages the debug build, as it is, instead of making a release build
# (the tests do, to reuse the build they run on); the packages are the same but for the binaries'
# speed and size.
set -euo pipefail
cd "$(dirname "$0")/.."

formats=()
repo=false
for word in "$@"; do
    case "$word" in
        deb | rpm) [[ " ${formats[*]} " == *" $word "* ]] || formats+=("$word") ;;
        repo) repo=true ;;
        *) echo "build: unknown format $word (deb, rpm or repo)" >&2; exit 2 ;;
    esac
done
if $repo; then
    formats=(deb rpm)
    key=${MUSTER_REPO_KEY:-}
    [[ -n $key ]] || { echo "build: repo needs MUSTER_REPO_KEY, the GPG key that signs it (gpg --list-secret-keys)" >&2; exit 2; }
    gpg --batch --list-secret-keys "$key" >/dev/null 2>&1 || { echo "build: no secret key $key in gpg's keyring${GNUPGHOME:+ ($GNUPGHOME)}" >&2; exit 2; }
    for tool in apt-ftparchive createrepo_c; do
        command -v "$tool" >/dev/null || { echo "build: repo needs $tool (apt-get install apt-utils createrepo-c; .ci/setup does)" >&2; exit 1; }
    done
fi
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

if $repo; then
    dir=$out/repo
    mkdir -p "$dir/deb" "$dir/rpm"
    cp "$out"/*.deb "$dir/deb/"
    cp "$out"/*.rpm "$dir/rpm/"
    (
        cd "$dir/deb"
        apt-ftparchive packages . >Packages
        gzip -9nk Packages
        apt-ftparchive -o APT::FTPArchive::Release::Origin=Muster -o APT::FTPArchive::Release::Label=Muster \
            -o APT::FTPArchive::Release::Suite=stable -o APT::FTPArchive::Release::Codename=stable release . >../Release.new
        # Written beside, not in, the directory it lists (else it lists itself, half written).
        mv ../Release.new Release
        gpg --batch --yes --local-user "$key" --clearsign --output InRelease Release
        gpg --batch --yes --local-user "$key" --armor --detach-sign --output Release.gpg Release
    )
    createrepo_c --quiet "$dir/rpm"
    gpg --batch --yes --local-user "$key" --armor --detach-sign --output "$dir/rpm/repodata/repomd.xml.asc" "$dir/rpm/repodata/repomd.xml"
    gpg --batch --export "$key" >"$dir/muster-archive-keyring.gpg"
    gpg --batch --armor --export "$key" >"$dir/muster-archive-keyring.asc"
    cat >"$dir/muster.list" <<'LIST'
# /etc/apt/sources.list.d/muster.list; the key: /usr/share/keyrings/muster-archive-keyring.gpg
deb [signed-by=/usr/share/keyrings/muster-archive-keyring.gpg] BASE_URL/deb ./
LIST
    cat >"$dir/muster.repo" <<'REPO'
# /etc/yum.repos.d/muster.repo. The metadata is signed (repo_gpgcheck) and lists every package's
# checksum; the packages themselves are not signed one by one.
[muster]
name=Muster
baseurl=BASE_URL/rpm
enabled=1
repo_gpgcheck=1
gpgcheck=0
gpgkey=BASE_URL/muster-archive-keyring.asc
REPO
    fingerprint=$(gpg --batch --with-colons --fingerprint "$key" | awk -F: '$1 == "fpr" { print $10; exit }')
    echo "build: repositories in $dir, signed by $fingerprint"
fi
