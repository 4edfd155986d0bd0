# ota-agent A/B boot script for U-Boot (docs/bootloader.md). Build it with
#   mkimage -A arm64 -O linux -T script -C none -d boot.cmd boot.scr     (-A arm for 32-bit)
# and put boot.scr on the boot partition, where U-Boot's distro boot finds it.
# Disk: partition 1 = boot (FAT: boot.scr, uboot.env), 2 = root_a, 3 = root_b. Each root holds
# /boot/Image (arm64, uncompressed) or /boot/zImage (armv7) and /boot/initrd.img.
# The environment lives in uboot.env on partition 1 (fw_env.config on the device:
# "/boot/firmware/uboot.env 0x0 0x4000"); the script counts boots itself, so it needs neither
# CONFIG_BOOTCOUNT_LIMIT nor a writable flash environment (both missing from Debian's
# u-boot-qemu), only FAT write support.
# Board addresses (QEMU virt, RAM from 0x40000000): change them for another board.
setenv envaddr 0x4f000000
setenv ota_kernel_addr 0x40400000
setenv ota_zimage_addr 0x42000000
setenv ota_initrd_addr 0x48000000
if test -z "${devtype}"; then setenv devtype virtio; fi
if test -z "${devnum}"; then setenv devnum 0; fi
setenv ota_slot
setenv upgrade_available
setenv bootcount
setenv bootlimit
if load ${devtype} ${devnum}:1 ${envaddr} uboot.env; then env import -c ${envaddr} 0x4000; fi
if test -z "${ota_slot}"; then setenv ota_slot a; fi
if test -z "${bootlimit}"; then setenv bootlimit 1; fi
if test -z "${bootcount}"; then setenv bootcount 0; fi
if test -z "${upgrade_available}"; then setenv upgrade_available 0; fi
echo "OTA-UBOOT: env ota_slot=${ota_slot} upgrade_available=${upgrade_available} bootcount=${bootcount} bootlimit=${bootlimit}"
if test "${upgrade_available}" = "1"; then
  if test "${bootcount}" = "0"; then setenv bootcount 1
  elif test "${bootcount}" = "1"; then setenv bootcount 2
  else setenv bootcount 3; fi
  if test ${bootcount} -gt ${bootlimit}; then
    echo "OTA-UBOOT: bootcount ${bootcount} > bootlimit ${bootlimit}: falling back"
    if test "${ota_slot}" = "b"; then setenv ota_slot a; else setenv ota_slot b; fi
    setenv upgrade_available 0
    setenv bootcount 0
  fi
  env export -c -s 0x4000 ${envaddr} ota_slot upgrade_available bootcount bootlimit
  fatwrite ${devtype} ${devnum}:1 ${envaddr} uboot.env 0x4000
fi
if test "${ota_slot}" = "b"; then setenv rootpart 3; else setenv rootpart 2; fi
echo "OTA-UBOOT: booting slot ${ota_slot} from ${devtype} ${devnum}:${rootpart}"
# panic=5: a kernel or initramfs that cannot reach userspace resets the board, so the count
# above runs again and falls back.
setenv bootargs "root=/dev/vda${rootpart} rootwait ro panic=5 console=ttyAMA0 ota.slot=${ota_slot}"
if load ${devtype} ${devnum}:${rootpart} ${ota_kernel_addr} /boot/Image; then
  if load ${devtype} ${devnum}:${rootpart} ${ota_initrd_addr} /boot/initrd.img; then
    booti ${ota_kernel_addr} ${ota_initrd_addr}:${filesize} ${fdtcontroladdr}
  fi
elif load ${devtype} ${devnum}:${rootpart} ${ota_zimage_addr} /boot/zImage; then
  if load ${devtype} ${devnum}:${rootpart} ${ota_initrd_addr} /boot/initrd.img; then
    bootz ${ota_zimage_addr} ${ota_initrd_addr}:${filesize} ${fdtcontroladdr}
  fi
fi
# Nothing bootable in this slot: reset, so the next pass counts the boot and falls back.
echo "OTA-UBOOT: slot ${ota_slot} has no bootable kernel; resetting"
reset
