#!/usr/bin/env bash
# Builds the inflow image from ./Dockerfile without a Docker daemon (buildah,
# rootful, chroot isolation) and runs it as the Helm chart's standalone pod
# (tests/image/run_image.py): a point written with curl is read back with SQL.
#
# The Dockerfile's base images cannot be pulled here (no registry but Debian's),
# so stand-ins with the same names are made locally first, once per state dir:
#   rust:X-slim-bookworm   debootstrap's bookworm minbase + what rust-lang/docker-rust's
#                          slim Dockerfile installs (ca-certificates gcc libc6-dev) + this
#                          machine's rustup toolchain X under /usr/local/rustup and cargo's
#                          proxies under /usr/local/cargo/bin, with that image's ENV;
#   gcr.io/distroless/cc-debian12:nonroot
#                          bookworm's base-files netbase tzdata libc6 libssl3 libgcc-s1
#                          libgomp1 libstdc++6 unpacked (no dpkg, no shell), the CA bundle,
#                          user nonroot 65532, as distroless builds it.
# Then buildah runs the Dockerfile itself (`buildah bud`, cache mounts and all).
#
#   tests/image/build.sh --full   the real Dockerfile on this repository: the release build
#                                 (cold: 47 min on 2 busy cores; the cache mounts persist in the
#                                 state dir, so a rebuild only recompiles what changed).
#   tests/image/build.sh          (quick, for CI: 3.5 min from nothing, 30 s once the stand-ins
#                                 exist) the Dockerfile's build stage,
#                                 verbatim, on a one-file crate named inflow that links
#                                 tikv-jemallocator as inflow does (so cc, make and the
#                                 toolchain are proven), then the runtime stage, verbatim, fed
#                                 the debug binary cargo test built; the run check as --full.
#
# Needs root, buildah, debootstrap, podman and runc (installed with apt-get when missing), and the
# Helm binary tests/helm/run.sh installs (HELM). State: $INFLOW_IMAGE_STATE
# (default target/image); delete it to remake the stand-ins.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD

mode=quick
case "${1:-}" in
  --full) mode=full ;;
  --quick | "") ;;
  *) echo "usage: $0 [--quick|--full]" >&2; exit 2 ;;
esac

# One closing line, as tests/run.sh sums them.
trap 'if [ $? -eq 0 ]; then echo "image: 1 passed, 0 failed"; else echo "image: 0 passed, 1 failed"; fi' EXIT

state=${INFLOW_IMAGE_STATE:-$repo/target/image}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
driver=${INFLOW_IMAGE_STORAGE_DRIVER:-overlay}
image=localhost/inflow:image-test
mkdir -p "$state/tmp"
started=$SECONDS
step() { printf '[image %4ds] %s\n' $((SECONDS - started)) "$*"; }

if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah debootstrap
fi
export BUILDAH_ISOLATION=chroot
# buildah keeps RUN --mount=type=cache directories under $TMPDIR/buildah-cache.
bh() { TMPDIR="$state/tmp" buildah --root "$state/storage" --runroot "$state/run" --storage-driver "$driver" "$@"; }
have_image() { bh inspect --type image "$1" >/dev/null 2>&1; }

# The Dockerfile's stages: the first FROM is the build stage, the last the runtime.
dockerfile=$repo/Dockerfile
mapfile -t bases < <(awk 'toupper($1) == "FROM" { print $2 }' "$dockerfile")
build_base=${bases[0]}
runtime_base=${bases[${#bases[@]} - 1]}

# --- stand-in base images ----------------------------------------------------------

debian_base=docker.io/library/debian:bookworm-slim
if ! have_image "$debian_base"; then
  step "debootstrap bookworm (minbase) from $mirror"
  root=$state/rootfs-debian
  rm -rf "$root"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$state/debootstrap.log" 2>&1 ||
    { tail -20 "$state/debootstrap.log"; exit 1; }
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  ctr=$(bh from --pull=never scratch)
  mnt=$(bh mount "$ctr")
  tar -C "$root" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . | tar -C "$mnt" -x
  bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash \
    --label inflow.test.stand-in=debootstrap "$ctr"
  bh commit --quiet --rm "$ctr" "$debian_base" >/dev/null
  rm -rf "$root"
fi

case "$build_base" in
  rust:*-slim-bookworm) ;;
  *) echo "no stand-in for the build stage's base $build_base (expected rust:X-slim-bookworm)" >&2; exit 1 ;;
esac
if ! have_image "$build_base"; then
  want=${build_base#rust:}
  want=${want%-slim-bookworm}
  toolchain=$(dirname "$(dirname "$(readlink -f "$(rustup which rustc)")")")
  version=$("$toolchain/bin/rustc" -V | awk '{ print $2 }')
  case "$version" in
    "$want" | "$want".*) ;;
    *) echo "the Dockerfile builds with Rust $want; this machine's rustc is $version" >&2; exit 1 ;;
  esac
  step "stand-in $build_base: bookworm slim + apt ca-certificates gcc libc6-dev + Rust $version"
  ctr=$(bh from --pull=never "$debian_base")
  # As rust-lang/docker-rust's bookworm/slim Dockerfile (wget only fetches rustup-init there).
  bh run "$ctr" -- sh -euc 'apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates gcc libc6-dev >/dev/null
    rm -rf /var/lib/apt/lists/*'
  mnt=$(bh mount "$ctr")
  host=x86_64-unknown-linux-gnu
  mkdir -p "$mnt/usr/local/rustup/toolchains/$version-$host" "$mnt/usr/local/cargo/bin"
  tar -C "$toolchain" --exclude=./share/doc -c . | tar -C "$mnt/usr/local/rustup/toolchains/$version-$host" -x
  printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\n' "$version-$host" \
    >"$mnt/usr/local/rustup/settings.toml"
  install -m 0755 "$(dirname "$(command -v rustup)")/rustup" "$mnt/usr/local/cargo/bin/rustup"
  for proxy in cargo cargo-clippy cargo-fmt clippy-driver rustc rustdoc rustfmt; do
    ln "$mnt/usr/local/cargo/bin/rustup" "$mnt/usr/local/cargo/bin/$proxy"
  done
  chmod -R a+w "$mnt/usr/local/rustup" "$mnt/usr/local/cargo"
  bh config --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
    --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env RUST_VERSION="$version" --label inflow.test.stand-in=rust-slim-bookworm "$ctr"
  # What the real image has and lacks: the toolchain through rustup's proxies, no make.
  bh run "$ctr" -- sh -euc 'cargo --version; rustc --version; command -v cc; ! command -v make'
  bh commit --quiet --rm "$ctr" "docker.io/library/$build_base" >/dev/null
fi

case "$runtime_base" in
  gcr.io/distroless/cc-debian12:nonroot) ;;
  *) echo "no stand-in for the runtime stage's base $runtime_base" >&2; exit 1 ;;
esac
if ! have_image "$runtime_base"; then
  step "stand-in $runtime_base: bookworm packages unpacked, no shell, user 65532"
  ctr=$(bh from --pull=never scratch)
  mnt=$(bh mount "$ctr")
  work=$(bh from --pull=never "docker.io/library/$build_base")
  # Downloaded and unpacked by bookworm's own apt and dpkg-deb, not the host's.
  # shellcheck disable=SC2016 # expanded by the container's sh
  bh run -v "$mnt:/rootfs" "$work" -- sh -euc 'cd /tmp; apt-get update -qq
    apt-get download -qq base-files netbase tzdata libc6 libssl3 libgcc-s1 libgomp1 libstdc++6
    for deb in ./*.deb; do dpkg-deb -x "$deb" /rootfs; done
    mkdir -p /rootfs/etc/ssl/certs
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/'
  bh rm "$work" >/dev/null
  cat >"$mnt/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  printf 'root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n' >"$mnt/etc/group"
  install -d -m 0700 "$mnt/root"
  install -d -m 0700 -o 65532 -g 65532 "$mnt/home/nonroot"
  install -d -m 1777 "$mnt/tmp"
  for sh in bin/sh bin/bash usr/bin/sh usr/bin/bash bin/busybox; do
    [ ! -e "$mnt/$sh" ] || { echo "the distroless stand-in has a shell: /$sh" >&2; exit 1; }
  done
  bh config --user 65532 --workingdir /home/nonroot \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --label inflow.test.stand-in=distroless-cc-debian12-nonroot "$ctr"
  bh commit --quiet --rm "$ctr" "$runtime_base" >/dev/null
fi

# --- the image ---------------------------------------------------------------------

# The build fetches crates from crates.io: its RUN steps trust what this machine trusts
# (here, a TLS-intercepting egress proxy's CA). Mounted for the build only, not in the image.
trust=()
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  trust=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
fi

# The Dockerfile's text from its first FROM to just before its last FROM, and from its
# last FROM to the end: the stages, as written.
build_stage() { awk 'toupper($1) == "FROM" { n++ } n == 1' "$dockerfile"; }
runtime_stage() { awk -v last="${#bases[@]}" 'toupper($1) == "FROM" { n++ } n == last' "$dockerfile"; }

if [ "$mode" = full ]; then
  step "buildah bud $dockerfile (the release build)"
  t0=$SECONDS
  bh bud --pull=never --layers=false "${trust[@]}" -f "$dockerfile" -t "$image" "$repo" 2>&1 | tee "$state/build-full.log"
  step "full build took $((SECONDS - t0))s; crates compiled: $(grep -c '^ *Compiling ' "$state/build-full.log" || true)"
else
  # The build stage on a crate named inflow with one bin inflow that links jemalloc as
  # inflow does (tikv-jemallocator at Cargo.lock's version, its build needs cc and make).
  ctx=$state/quick-build
  rm -rf "$ctx"
  mkdir -p "$ctx/src"
  jemallocator=$(awk '/^name = "tikv-jemallocator"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
  jemalloc_sys=$(awk '/^name = "tikv-jemalloc-sys"$/ { getline; gsub(/"/, "", $3); sub(/[+].*/, "", $3); print $3 }' Cargo.lock)
  cat >"$ctx/Cargo.toml" <<EOF
[package]
name = "inflow"
version = "0.0.0"
edition = "2021"

[dependencies]
tikv-jemallocator = "=$jemallocator"
tikv-jemalloc-sys = "=$jemalloc_sys"
EOF
  cat >"$ctx/src/main.rs" <<'EOF'
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let v: Vec<u64> = (0..1024).collect();
    println!("jemalloc ok: {}", v.iter().sum::<u64>());
}
EOF
  cargo generate-lockfile --quiet --manifest-path "$ctx/Cargo.toml" --offline 2>/dev/null ||
    cargo generate-lockfile --quiet --manifest-path "$ctx/Cargo.toml"
  build_stage >"$ctx/Dockerfile"
  step "buildah bud: the Dockerfile's build stage on a jemalloc crate"
  # Its own cache mounts: the full build's target/ is not touched.
  mkdir -p "$state/tmp-quick"
  TMPDIR="$state/tmp-quick" buildah --root "$state/storage" --runroot "$state/run" --storage-driver "$driver" \
    bud --pull=never --layers=false "${trust[@]}" -t localhost/inflow-build-stage:image-test "$ctx"
  # The stage's output runs: the toolchain linked a working binary with jemalloc.
  ctr=$(bh from --pull=never localhost/inflow-build-stage:image-test)
  out=$(bh run "$ctr" -- /out/inflow)
  bh rm "$ctr" >/dev/null
  [ "$out" = "jemalloc ok: 523776" ] || { echo "the build stage's binary printed: $out" >&2; exit 1; }

  # The runtime stage, verbatim, its build stage replaced by the debug binary.
  bin=${INFLOW_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/inflow}
  [ -x "$bin" ] || { echo "$bin missing: build it (cargo build --bin inflow) or set INFLOW_BIN" >&2; exit 1; }
  ctx=$state/quick-runtime
  rm -rf "$ctx"
  mkdir -p "$ctx/out"
  install -d -m 0755 "$ctx/out/data"
  ln "$bin" "$ctx/out/inflow" 2>/dev/null || cp "$bin" "$ctx/out/inflow"
  {
    echo "FROM scratch AS build"
    echo "COPY out /out"
    runtime_stage
  } >"$ctx/Dockerfile"
  step "buildah bud: the Dockerfile's runtime stage on the debug binary"
  bh bud --pull=never --layers=false -t "$image" "$ctx"
  rm -rf "$ctx"
fi

# --- the run -----------------------------------------------------------------------

ctr=$(bh from --pull=never "$image")
rootfs=$(bh mount "$ctr")
step "image rootfs: $(du -sh --apparent-size "$rootfs" | cut -f1) ($(du -sh --apparent-size "$rootfs/usr/local/bin/inflow" | cut -f1) of it the binary)"
for sh in bin/sh bin/bash usr/bin/sh usr/bin/bash bin/busybox; do
  [ ! -e "$rootfs/$sh" ] || { echo "the image has a shell: /$sh" >&2; exit 1; }
done
bh rm "$ctr" >/dev/null
# The images this run's tags replaced (one a container still uses stays).
bh rmi --prune >/dev/null 2>&1 || true

# podman on the same storage; runc and cgroupfs, which work where cgroups are hybrid.
if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc
fi
step "podman run $image as the chart's standalone pod, then with its default command"
"${INFLOW_TEST_PYTHON:-python3}" tests/image/run_image.py "$image" \
  podman --root "$state/storage" --runroot "$state/run" --storage-driver "$driver" \
  --runtime runc --cgroup-manager cgroupfs
step "done ($mode)"
