#!/usr/bin/env bash
# Boots one kernel + initramfs under QEMU with the test devices; the serial console goes to
# CONSOLE_LOG, the results port (ttyS1 on x86, hvc0 on aarch64) to RESULTS_LOG. Hard timeout: TIMEOUT seconds.
# Usage: run-vm.sh KERNEL INITRAMFS CONSOLE_LOG RESULTS_LOG TIMEOUT [ACCEL [ARCH]]
#   ARCH: x86_64 (default: q35 + intel-iommu) or aarch64 (virt + SMMUv3, TCG).
# Exit status: QEMU's (124 on timeout).
set -uo pipefail
# Module parameters, as `module.param=value` on the kernel command line: a built-in driver (the
# custom kernel's vivid) reads them there; for a module, scripts/vm/init passes the same words to
# insmod. vivid: two instances, the first single-planar (multiplanar=1), the second multi-planar
# (multiplanar=2), so both V4L2 capture APIs run for real.
MODPARAMS="vivid.n_devs=2 vivid.multiplanar=1,2"
kernel=$1 initrd=$2 console=$3 results=$4 timeout=$5 accel=${6:-tcg} arch=${7:-x86_64}
cpu=max
[ "$accel" = kvm ] && cpu=host
# vCPUs: 1 under TCG (default). scripts/hw-test boots two VMs at once on CI's 2 cores; with two
# vCPUs each, a guest's vCPU thread that holds a lock (or is due a timer) waits for a host core
# behind the other VM's threads, and under that load the guest's clocksource watchdog and
# vblank timers misfire. Twice, a 6.12 guest (x86, then arm64) froze in a vkms writeback
# commit until the VM's hard timeout. UNIBUF_VM_SMP overrides.
smp=${UNIBUF_VM_SMP:-1}
[ "$accel" = kvm ] && smp=${UNIBUF_VM_SMP:-2}
: >"$console"
: >"$results"
common=(-smp "$smp" -m 2G -kernel "$kernel" -initrd "$initrd" -device edu -nic none
    -display none -monitor none -no-reboot -serial "file:$console")
case "$arch" in
    x86_64)
        exec timeout --kill-after=10 "$timeout" qemu-system-x86_64 "${common[@]}" \
            -accel "$accel" -cpu "$cpu" \
            -machine q35,kernel-irqchip=split \
            -device intel-iommu,intremap=on \
            -append "console=ttyS0 cma=64M intel_iommu=on no_timer_check panic=-1 loglevel=6 rdinit=/init $MODPARAMS" \
            -serial "file:$results" \
            </dev/null ;;
    aarch64)
        # virt with GICv3 (ITS for MSIs) and an SMMUv3 in front of the PCIe bus (edu's DMA goes
        # through it, as through intel-iommu on x86). virt has one UART: the results go to a
        # virtio console (hvc0 in the guest). pauth-impdef: the cheap pointer-auth algorithm under
        # TCG (the architected one makes TCG several times slower).
        exec timeout --kill-after=10 "$timeout" qemu-system-aarch64 "${common[@]}" \
            -accel tcg -cpu max,pauth-impdef=on \
            -machine virt,gic-version=3,iommu=smmuv3 \
            -device virtio-serial-pci -chardev "file,id=results,path=$results" \
            -device virtconsole,chardev=results \
            -append "console=ttyAMA0 cma=64M panic=-1 loglevel=6 rdinit=/init $MODPARAMS" \
            </dev/null ;;
    *) echo "run-vm.sh: unknown architecture $arch" >&2; exit 2 ;;
esac
