#!/usr/bin/env bash
# Boots one kernel + initramfs under QEMU with the test devices; the serial console goes to
# CONSOLE_LOG, the results port (ttyS1) to RESULTS_LOG. Hard timeout: TIMEOUT seconds.
# Usage: run-vm.sh KERNEL INITRAMFS CONSOLE_LOG RESULTS_LOG TIMEOUT [ACCEL]
# Exit status: QEMU's (124 on timeout).
set -uo pipefail
# Module parameters, as `module.param=value` on the kernel command line: a built-in driver (the
# custom kernel's vivid) reads them there; for a module, scripts/vm/init passes the same words to
# insmod. vivid: two instances, the first single-planar (multiplanar=1), the second multi-planar
# (multiplanar=2), so both V4L2 capture APIs run for real.
MODPARAMS="vivid.n_devs=2 vivid.multiplanar=1,2"
kernel=$1 initrd=$2 console=$3 results=$4 timeout=$5 accel=${6:-tcg}
cpu=max
[ "$accel" = kvm ] && cpu=host
: >"$console"
: >"$results"
exec timeout --kill-after=10 "$timeout" qemu-system-x86_64 \
    -accel "$accel" -cpu "$cpu" -smp 2 -m 2G \
    -machine q35,kernel-irqchip=split \
    -device intel-iommu,intremap=on \
    -device edu \
    -kernel "$kernel" -initrd "$initrd" \
    -append "console=ttyS0 cma=64M intel_iommu=on no_timer_check panic=-1 loglevel=6 rdinit=/init $MODPARAMS" \
    -display none -monitor none -no-reboot \
    -serial "file:$console" -serial "file:$results" \
    </dev/null
