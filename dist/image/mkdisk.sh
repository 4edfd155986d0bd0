#!/bin/sh
# Step 2 of a Debian-based ota-agent device image: install the agent the image builders' way
# into a copy of a rootfs from mkrootfs.sh (its package, `make deb`, with the rootfs's own dpkg
# through qemu-user binfmt; or `make install DESTDIR=... INSTALL_BIN=...` with --agent), then
# assemble an A/B disk without mounts or loop devices:
#   p1 boot  FAT   U-Boot: boot.scr (dist/bootloader/boot.cmd) + uboot.env, uboot-redund.env (its environment)
#                  GRUB (arm64 EFI): EFI/BOOT/BOOTAA64.EFI (dist/bootloader/grub.cfg) + grubenv, grubenv-redund
#   p2 root_a ext4 the rootfs        p3 root_b ext4 the same rootfs
#   p4 data  ext4  /var/lib/ota-agent: the state directory outlives either root slot
# usage: mkdisk.sh --rootfs DIR --arch arm64|armhf (--deb PKG.deb | --agent BIN) --config FILE --out DIR
#                  [--key PUB.pem] [--overlay DIR] [--root-size MiB] [--data-size MiB]
#                  [--bootloader uboot|grub]
# Writes OUT/disk.img, OUT/root.img (slot A's filesystem: also what an OS release of this
# tree looks like) and OUT/tree (the staged rootfs, for building further OS releases).
# Needs: e2fsprogs dosfstools mtools fdisk u-boot-tools (dist/image/host-deps.sh).
set -eu
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
rootfs= arch= agent= deb= config= out= key= overlay= rootmb=600 datamb=256 bootloader=uboot
while [ $# -gt 0 ]; do
  case $1 in
    --rootfs) rootfs=$2 ;; --arch) arch=$2 ;; --agent) agent=$2 ;; --deb) deb=$2 ;; --config) config=$2 ;;
    --out) out=$2 ;; --key) key=$2 ;; --overlay) overlay=$2 ;; --root-size) rootmb=$2 ;;
    --data-size) datamb=$2 ;; --bootloader) bootloader=$2 ;;
    *) echo "mkdisk.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift 2
done
for v in rootfs arch config out; do
  eval "[ -n \"\$$v\" ]" || { echo "mkdisk.sh: --$v is required" >&2; exit 2; }
done
[ -n "$agent$deb" ] && [ -z "$agent" -o -z "$deb" ] || { echo "mkdisk.sh: --deb PKG.deb or --agent BIN is required (one of them)" >&2; exit 2; }
[ -x "$rootfs/sbin/init" ] || { echo "mkdisk.sh: $rootfs is not a rootfs from mkrootfs.sh" >&2; exit 2; }
case $arch in arm64) mkarch=arm64 ;; armhf) mkarch=arm ;; *) echo "mkdisk.sh: --arch arm64 or armhf" >&2; exit 2 ;; esac
case $arch/$bootloader in arm64/grub|*/uboot) ;; *) echo "mkdisk.sh: --bootloader uboot, or grub on arm64" >&2; exit 2 ;; esac
[ -z "$agent" ] || agent=$(cd "$(dirname "$agent")" && pwd)/$(basename "$agent")
mkdir -p "$out"; out=$(cd "$out" && pwd); t=$out/tree
rm -rf "$t" "$out/disk.img" "$out/root.img"
cp -a "$rootfs" "$t"

# The agent, its unit, config and state directory (the package's maintainer scripts enable
# the unit and make the state directory); the partition-mode drop-in.
if [ -n "$deb" ]; then
  cp "$deb" "$t/tmp/ota-agent.deb"
  chroot "$t" dpkg -i /tmp/ota-agent.deb
  rm -f "$t/tmp/ota-agent.deb"
else
  make -s -C "$repo" install DESTDIR="$t" INSTALL_BIN="$agent"
fi
install -m 0640 "$config" "$t/etc/ota-agent/config.yaml"
install -D -m 0644 "$repo/dist/ota-agent.service.d/partition.conf" "$t/etc/systemd/system/ota-agent.service.d/partition.conf"
[ -z "$key" ] || install -D -m 0644 "$key" "$t/etc/ota-agent/keys/release.pub.pem"
if [ "$bootloader" = uboot ]; then
  # The redundant pair (docs/bootloader.md): a cut during fw_setenv leaves one copy whole.
  printf '/boot/firmware/uboot.env 0x0 0x4000\n/boot/firmware/uboot-redund.env 0x0 0x4000\n' > "$t/etc/fw_env.config"
  bootdir=/boot/firmware
else
  bootdir=/boot/efi
fi
mkdir -p "$t$bootdir"
cat > "$t/etc/fstab" <<EOT
/dev/root  /                  ext4  rw,errors=remount-ro  0 1
/dev/vda1  $bootdir     vfat  defaults              0 0
/dev/vda4  /var/lib/ota-agent ext4  defaults              0 2
EOT
echo ota-gw > "$t/etc/hostname"
# The kernel where the boot script loads it: arm64 booti takes the uncompressed Image.
k=$(ls "$t"/boot/vmlinuz-* | sort -V | tail -1); i=$(ls "$t"/boot/initrd.img-* | sort -V | tail -1)
# Hard links, not copies: the OS image carries each byte once.
if [ "$arch" = arm64 ] && gzip -t "$k" 2>/dev/null; then zcat "$k" > "$t/boot/Image"
elif [ "$arch" = arm64 ]; then ln -f "$k" "$t/boot/Image"
else ln -f "$k" "$t/boot/zImage"; fi
ln -f "$i" "$t/boot/initrd.img"
[ -z "$overlay" ] || cp -a "$overlay/." "$t/"

# Filesystems. root.img is sized to the tree (+1/8 and 32 MiB for ext4's own), so an OS release is no bigger than it
# must be; the partitions are --root-size MiB.
used=$(du -sm "$t" | cut -f1); fsmb=$(( used + used / 8 + 32 ))
[ "$fsmb" -le "$rootmb" ] || { echo "mkdisk.sh: the rootfs needs ${fsmb} MiB, more than --root-size $rootmb" >&2; exit 1; }
mkfs.ext4 -q -F -L root -d "$t" "$out/root.img" "${fsmb}M"
mkfs.ext4 -q -F -L ota-data "$out/data.img" "${datamb}M"
rm -f "$out/boot.img"; mkfs.vfat -n BOOT -C "$out/boot.img" 32768 >/dev/null
if [ "$bootloader" = uboot ]; then
  mkimage -q -A "$mkarch" -O linux -T script -C none -d "$repo/dist/bootloader/boot.cmd" "$out/boot.scr"
  printf 'ota_slot=a\nupgrade_available=0\nbootcount=0\nbootlimit=1\n' > "$out/env.txt"
  mkenvimage -r -s 0x4000 -o "$out/uboot.env" "$out/env.txt"
  cp "$out/uboot.env" "$out/uboot-redund.env"
  mcopy -i "$out/boot.img" "$out/boot.scr" "$out/uboot.env" "$out/uboot-redund.env" ::
  esp=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7
else
  # grub-mkstandalone of the tree's own GRUB (arm64, run through qemu-user binfmt).
  cp "$repo/dist/bootloader/grub.cfg" "$t/tmp/ota-grub.cfg"
  chroot "$t" grub-mkstandalone -O arm64-efi -o /tmp/BOOTAA64.EFI "boot/grub/grub.cfg=/tmp/ota-grub.cfg"
  mv "$t/tmp/BOOTAA64.EFI" "$out/BOOTAA64.EFI"; rm -f "$t/tmp/ota-grub.cfg"
  rm -f "$out/grubenv"; grub-editenv "$out/grubenv" create
  grub-editenv "$out/grubenv" set ota_slot=a upgrade_available=0 bootcount=0 bootlimit=1
  cp "$out/grubenv" "$out/grubenv-redund"
  mmd -i "$out/boot.img" ::EFI ::EFI/BOOT
  mcopy -i "$out/boot.img" "$out/BOOTAA64.EFI" ::EFI/BOOT/BOOTAA64.EFI
  mcopy -i "$out/boot.img" "$out/grubenv" "$out/grubenv-redund" ::
  esp=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
fi

# GPT, partitions copied in place (sparse).
a=33; b=$(( a + rootmb )); d=$(( b + rootmb )); total=$(( d + datamb + 1 ))
truncate -s "${total}M" "$out/disk.img"
sfdisk -q "$out/disk.img" <<EOT
label: gpt
start=1MiB, size=32MiB, type=$esp, name=boot, attrs="LegacyBIOSBootable"
start=${a}MiB, size=${rootmb}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root_a
start=${b}MiB, size=${rootmb}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root_b
start=${d}MiB, size=${datamb}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=data
EOT
dd if="$out/boot.img" of="$out/disk.img" bs=1M seek=1    conv=notrunc,sparse status=none
dd if="$out/root.img" of="$out/disk.img" bs=1M seek="$a" conv=notrunc,sparse status=none
dd if="$out/root.img" of="$out/disk.img" bs=1M seek="$b" conv=notrunc,sparse status=none
dd if="$out/data.img" of="$out/disk.img" bs=1M seek="$d" conv=notrunc,sparse status=none
rm -f "$out/boot.img" "$out/data.img" "$out/boot.scr" "$out/env.txt" "$out/uboot.env" "$out/uboot-redund.env" "$out/BOOTAA64.EFI" "$out/grubenv" "$out/grubenv-redund"
printf 'boot 1 32\nroot_a %s %s\nroot_b %s %s\ndata %s %s\n' "$a" "$rootmb" "$b" "$rootmb" "$d" "$datamb" > "$out/layout"
echo "mkdisk.sh: $out/disk.img (root ${fsmb} MiB in ${rootmb} MiB slots, data ${datamb} MiB)"
