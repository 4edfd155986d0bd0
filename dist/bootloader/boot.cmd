# ota-agent A/B boot script for U-Boot (docs/bootloader.md). Build it with
#   mkimage -A arm64 -O linux -T script -C none -d boot.cmd boot.scr     (-A arm for 32-bit)
# and put boot.scr on the boot partition, where U-Boot's distro boot finds it.
# Disk: partition 1 = boot (FAT: boot.scr, uboot.env, uboot-redund.env), 2 = root_a,
# 3 = root_b. Each root holds /boot/Image (arm64, uncompressed) or /boot/zImage (armv7) and
# /boot/initrd.img. The script counts boots itself, so it needs neither CONFIG_BOOTCOUNT_LIMIT
# nor a writable flash environment (both missing from Debian's u-boot-qemu), only FAT write.
# The environment is libubootenv's redundant pair on partition 1, uboot.env and
# uboot-redund.env, each 0x4000 bytes: [CRC-32 of the data][flag][data]. The device names
# both in fw_env.config; fw_setenv writes the copy not in use with the flag one higher and
# fsyncs it, so a power cut during the write leaves the other copy whole. This script takes
# the copy whose CRC holds, the higher flag when both do (0 after 255), and writes the other
# one, as U-Boot's own redundant environment does. Without uboot-redund.env, uboot.env is the
# single-copy format ([CRC][data]; fw_env.config with one line).
# Board addresses (QEMU virt, RAM from 0x40000000): change them for another board.
setenv ota_env 0x4f000000
setenv ota_env_flag 0x4f000004
setenv ota_env_data 0x4f000005
setenv ota_env_chk 0x4f008000
setenv ota_env_chk_data 0x4f008004
setenv ota_kernel_addr 0x40400000
setenv ota_zimage_addr 0x42000000
setenv ota_initrd_addr 0x48000000
if test -z "${devtype}"; then setenv devtype virtio; fi
if test -z "${devnum}"; then setenv devnum 0; fi
setenv ota_vars ota_slot upgrade_available bootcount bootlimit
setenv ota_clear 'setenv ota_slot; setenv upgrade_available; setenv bootcount; setenv bootlimit'
# ota_read: copy ${ota_file} to ${ota_env}; when it is whole and its CRC holds, its variables
# are imported, ota_ok=1 and ota_flag is its flag. env import -c wants [CRC][data]: the CRC
# is moved next to the data at ${ota_env_chk}.
setenv ota_read 'setenv ota_ok 0; setenv ota_flag 0; mw.b ${ota_env} 0 0x4000; if load ${devtype} ${devnum}:1 ${ota_env} ${ota_file}; then if test "${filesize}" = "4000"; then setexpr.b ota_flag *${ota_env_flag}; cp.b ${ota_env} ${ota_env_chk} 4; cp.b ${ota_env_data} ${ota_env_chk_data} 0x3ffb; if env import -c ${ota_env_chk} 0x3fff ${ota_vars}; then setenv ota_ok 1; fi; fi; fi'
run ota_clear
setenv ota_redund 0
if test -e ${devtype} ${devnum}:1 uboot-redund.env; then
  setenv ota_redund 1
  setenv ota_file uboot-redund.env; run ota_read; setenv ota_b_ok ${ota_ok}; setenv ota_b_flag ${ota_flag}
  run ota_clear
  setenv ota_file uboot.env; run ota_read; setenv ota_a_ok ${ota_ok}; setenv ota_a_flag ${ota_flag}
  setenv ota_use a
  if test "${ota_a_ok}" = "0"; then
    if test "${ota_b_ok}" = "1"; then setenv ota_use b; fi
  elif test "${ota_b_ok}" = "1"; then
    if itest ${ota_a_flag} == ff; then
      if itest ${ota_b_flag} == 0; then setenv ota_use b; fi
    fi
    if itest ${ota_b_flag} > ${ota_a_flag}; then
      if itest ${ota_b_flag} != ff; then setenv ota_use b; elif itest ${ota_a_flag} != 0; then setenv ota_use b; fi
    fi
  fi
  if test "${ota_use}" = "b"; then
    run ota_clear
    setenv ota_file uboot-redund.env; run ota_read
    setenv ota_other uboot.env; setenv ota_cur_flag ${ota_b_flag}
  else
    setenv ota_other uboot-redund.env; setenv ota_cur_flag ${ota_a_flag}
  fi
  echo "OTA-UBOOT: env copies uboot.env ok=${ota_a_ok} flag=${ota_a_flag}, uboot-redund.env ok=${ota_b_ok} flag=${ota_b_flag}: using ${ota_use}"
elif load ${devtype} ${devnum}:1 ${ota_env} uboot.env; then
  env import -c ${ota_env} 0x4000 ${ota_vars}
fi
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
  if test "${ota_redund}" = "1"; then
    setexpr ota_flag ${ota_cur_flag} + 1
    if itest ${ota_flag} > ff; then setenv ota_flag 0; fi
    env export -c -s 0x3fff ${ota_env_chk} ${ota_vars}
    cp.b ${ota_env_chk} ${ota_env} 4
    mw.b ${ota_env_flag} ${ota_flag}
    cp.b ${ota_env_chk_data} ${ota_env_data} 0x3ffb
    fatwrite ${devtype} ${devnum}:1 ${ota_env} ${ota_other} 0x4000
  else
    env export -c -s 0x4000 ${ota_env} ${ota_vars}
    fatwrite ${devtype} ${devnum}:1 ${ota_env} uboot.env 0x4000
  fi
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
