# images/rauc/boot.cmd, made into boot.scr on the FAT partition (mkimage -T script): the boot
# chooser of the whole-system A/B update (images/README.md, "Whole-system A/B update with RAUC").
# U-Boot's distro boot finds boot.scr on the first partition and sources it with devtype/devnum
# set (mmc 0 on the Pi, virtio 0 under QEMU in tests/images/test_boot_chooser.py).
#
# RAUC's U-Boot boot counting: BOOT_ORDER lists the slots, first tried first; BOOT_x_LEFT is how
# many more times slot x may be started. Each start costs one attempt, saved before the kernel
# runs, so a slot that panics or hangs (the watchdog resets) runs out of attempts and the next
# slot of BOOT_ORDER starts. `rauc install` puts the new slot first with 3 attempts; `rauc status
# mark-good` (the agent, once its birth reached the broker) gives them back; mark-bad sets 0.
# RAUC reads and writes these variables with fw_setenv (/etc/fw_env.config: uboot.env on the FAT).
# Slot A is partition 2, slot B partition 3; each holds its own kernel, initrd and device trees.
# The counters are saved with `saveenv` (the Pi's U-Boot keeps its environment in uboot.env on
# the FAT, where fw_setenv finds it), or with `run rauc_saveenv` when that is set: a board whose
# U-Boot keeps it elsewhere (the QEMU test saves the BOOT_ variables to a file on the FAT).

test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"
test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3
test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 3

setenv rauc_slot
for BOOT_SLOT in "${BOOT_ORDER}"; do
  if test -n "${rauc_slot}"; then
    true
  elif test "x${BOOT_SLOT}" = "xA"; then
    if test ${BOOT_A_LEFT} -gt 0; then
      setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
      setenv rauc_slot A
      setenv rauc_part 2
    fi
  elif test "x${BOOT_SLOT}" = "xB"; then
    if test ${BOOT_B_LEFT} -gt 0; then
      setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
      setenv rauc_slot B
      setenv rauc_part 3
    fi
  fi
done

if test -z "${rauc_slot}"; then
  # Both slots used up (e.g. power cuts during three boots in a row): RAUC's documented way out
  # is to give both their attempts back and start again, rather than stop for good.
  echo "batigate-boot: no slot has attempts left (BOOT_ORDER=${BOOT_ORDER}): both reset to 3"
  setenv BOOT_A_LEFT 3
  setenv BOOT_B_LEFT 3
  if test -n "${rauc_saveenv}"; then run rauc_saveenv; else saveenv; fi
  reset
fi

# The attempt is counted before anything of the slot runs.
if test -n "${rauc_saveenv}"; then run rauc_saveenv; else saveenv; fi
echo "batigate-boot: slot ${rauc_slot} (partition ${rauc_part}), attempts left A=${BOOT_A_LEFT} B=${BOOT_B_LEFT}, order ${BOOT_ORDER}"

part uuid ${devtype} ${devnum}:${rauc_part} rauc_partuuid
# The Pi firmware hands U-Boot its device tree (fdt_addr); QEMU's virt machine has U-Boot's own.
if test -n "${fdt_addr}"; then setenv rauc_fdt ${fdt_addr}; else setenv rauc_fdt ${fdtcontroladdr}; fi
# Debian's kernel is gzip-compressed: booti moves it here (kernel_comp_size: the file's size)
# and unpacks it to kernel_addr_r. 160 MiB above kernel_addr_r: past the kernel, initrd and
# device tree on the Pi (RAM from 0) as under QEMU's virt (RAM from 1 GiB).
test -n "${kernel_comp_addr_r}" || setexpr kernel_comp_addr_r ${kernel_addr_r} + 0x0a000000
# More kernel arguments from the FAT, as a technician edits cmdline.txt (a debug console; the
# image test's probe): batigate-bootargs.txt holds one line `rauc_extra_args=...`.
if load ${devtype} ${devnum}:1 ${kernel_addr_r} batigate-bootargs.txt; then
  env import -t ${kernel_addr_r} ${filesize} rauc_extra_args
fi
# What raspi-firmware writes to cmdline.txt (rw: nothing else remounts the root slot read-write),
# with the chosen slot as root.
setenv bootargs "console=ttyS1,115200 console=tty0 root=PARTUUID=${rauc_partuuid} rw fsck.repair=yes net.ifnames=0 rootwait rauc.slot=${rauc_slot} ${rauc_extra_args}"
echo "batigate-boot: bootargs ${bootargs}"

# /vmlinuz and /initrd.img: the links Debian's kernel package keeps at the slot's root.
load ${devtype} ${devnum}:${rauc_part} ${kernel_addr_r} /vmlinuz
setenv kernel_comp_size ${filesize}
load ${devtype} ${devnum}:${rauc_part} ${ramdisk_addr_r} /initrd.img
booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${rauc_fdt}
echo "batigate-boot: slot ${rauc_slot} did not boot; resetting (the next attempt is counted)"
reset
