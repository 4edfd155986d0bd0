#!/bin/sh
# Step 1 of a Debian-based ota-agent device image: a minimal Debian rootfs with systemd, the
# kernel and initramfs, and the U-Boot environment tools, for ARCH (arm64 or armhf), built with
# mmdebstrap through qemu-user binfmt. The agent itself is added by mkdisk.sh.
#   usage: mkrootfs.sh ARCH OUTDIR [MIRROR]       (as root; about 3 minutes on 2 cores)
# MIRROR defaults to the host's own Debian source (its apt sources).
# MODULES=virt (the default) keeps only the kernel modules of a QEMU virt board (virtio disk,
# net, console, rng; ext4, FAT) and drops the device trees: the OS image shrinks from ~560 to
# ~230 MiB. MODULES=all keeps every module, as a real board needs.
# EXTRA_PACKAGES (comma-separated) adds packages; KEEP_MODULES (an extended regex of paths
# under kernel/, e.g. 'fs/squashfs') keeps more modules with MODULES=virt. make bench-peers
# builds its peers' image this way (mender-client, rauc, swupdate; squashfs for RAUC bundles).
# Needs: mmdebstrap arch-test qemu-user-static binfmt-support (dist/image/host-deps.sh).
set -eu
arch=${1:?usage: mkrootfs.sh arm64|armhf OUTDIR [MIRROR]}; out=${2:?OUTDIR}
# The mirror: MIRROR, else the host's own Debian source (the first non-security one).
host_mirror() {
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && awk '/^URIs:/ {print $2}' "$f"
  done
  [ -f /etc/apt/sources.list ] && awk '/^deb / {print $2}' /etc/apt/sources.list
}
mirror=${3:-$(host_mirror 2>/dev/null | grep -v -- -security | head -1)}
[ -n "$mirror" ] || { echo "mkrootfs.sh: no Debian mirror in the host's apt sources; give one as MIRROR" >&2; exit 2; }
# arm64 also gets GRUB for EFI (grub-editenv on the device; mkdisk.sh --bootloader grub builds
# the EFI binary from the tree's modules).
case $arch in
  arm64) kernel=linux-image-arm64,grub-efi-arm64-bin,grub-common ;;
  armhf) kernel=linux-image-armmp-lpae ;;
  *) echo "mkrootfs.sh: unknown ARCH $arch (arm64 or armhf)" >&2; exit 2 ;;
esac
rm -rf "$out"

trim_modules() {
  for m in "$1"/usr/lib/modules/*; do
    (cd "$m/kernel" && find . -name '*.ko*' | grep -v -E \
      '^\./('"${KEEP_MODULES:+$KEEP_MODULES|}"'drivers/(virtio|block|char/hw_random|char/virtio|rtc|net/virtio_net|net/net_failover)|net/core/failover|fs/(ext4|jbd2|mbcache|fat|nls)|lib|crypto)' |
      xargs -r rm -f)
    find "$m/kernel" -type d -empty -delete
    chroot "$1" depmod "$(basename "$m")"
  done
  rm -rf "$1"/usr/lib/linux-image-*
}
# MODULES=list: only what finds the root (mkinitramfs under qemu-user with MODULES=most takes
# a quarter of an hour). Documentation, man pages and locales are not installed.
# merged /usr by mmdebstrap's hook (directory links made before the essential packages), not
# the usrmerge package: usrmerge pulls in perl (about 50 MiB of every OS image) and converts
# the tree with a perl script under qemu-user. force-unsafe-io: nothing is fsync'd while the
# tree is built (it is copied into images after).
mmdebstrap --arch="$arch" --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --dpkgopt=force-unsafe-io \
  --include=systemd-sysv,udev,kmod,dbus,libubootenv-tool,"$kernel",initramfs-tools,e2fsprogs${EXTRA_PACKAGES:+,$EXTRA_PACKAGES} \
  --aptopt='Apt::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"' \
  --essential-hook='echo MODULES=list > "$1/etc/initramfs-tools/conf.d/ota-image"' \
  --essential-hook='printf "%s\n" virtio_pci virtio_mmio virtio_blk ext4 crc32c_generic > "$1/usr/share/initramfs-tools/modules.d/ota-image.conf"' \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
  --customize-hook='for u in grub-common.service grub-initrd-fallback.service; do ln -sf /dev/null "$1/etc/systemd/system/$u"; done' \
  bookworm "$out" "$mirror"
[ "${MODULES:-virt}" = all ] || trim_modules "$out"
