//go:build system

package systemtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// vm is one emulated board: a disk image booted by U-Boot under qemu-system, with its serial
// console in a file per boot, a NIC whose only reachable addresses are forwarded to the host's
// testserver and control endpoint, and -no-reboot so that every reboot is a new boot here.
type vm struct {
	name    string
	arch    string // arm64 | armhf
	loader  string // uboot | grub (arm64 EFI)
	disk    string
	dir     string
	forward []string // guestfwd rules
	boots   int
	cmd     *exec.Cmd
	exited  chan struct{}
	log     string // serial log of the current boot
	started time.Time
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[a-zA-Z]`)

func (v *vm) qemuArgs() []string {
	var args []string
	switch {
	case v.loader == "grub":
		args = []string{"qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a57", "-bios", "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"}
	case v.arch == "arm64":
		args = []string{"qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a57", "-bios", "/usr/lib/u-boot/qemu_arm64/u-boot.bin"}
	default:
		args = []string{"qemu-system-arm", "-M", "virt", "-cpu", "cortex-a15", "-bios", "/usr/lib/u-boot/qemu_arm/u-boot.bin"}
	}
	netdev := "user,id=n0,restrict=on"
	for _, f := range v.forward {
		netdev += ",guestfwd=" + f
	}
	return append(args, "-smp", "2", "-m", "1024",
		"-drive", "if=virtio,file="+v.disk+",format=raw,cache=writeback",
		"-netdev", netdev, "-device", "virtio-net-pci,netdev=n0,romfile=",
		"-display", "none", "-monitor", "none", "-serial", "file:"+v.log, "-no-reboot")
}

// boot powers the board on. A QEMU that does not start (no U-Boot banner within a minute) is
// an infrastructure failure and is retried once; anything after U-Boot is the product's.
func (v *vm) boot(tag string) error {
	var err error
	for try := 0; try < 2; try++ {
		if err = v.start(tag); err == nil {
			return nil
		}
		v.kill()
	}
	return err
}

func (v *vm) start(tag string) error {
	v.boots++
	v.log = filepath.Join(v.dir, fmt.Sprintf("serial-%02d-%s.log", v.boots, tag))
	args := v.qemuArgs()
	v.cmd = exec.Command(args[0], args[1:]...)
	var stderr bytes.Buffer
	v.cmd.Stderr = &stderr
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := v.cmd.Start(); err != nil {
		return fmt.Errorf("qemu did not start: %v", err)
	}
	v.started = time.Now()
	v.exited = make(chan struct{})
	go func(c *exec.Cmd, ch chan struct{}) { c.Wait(); close(ch) }(v.cmd, v.exited)
	// U-Boot prints its banner at once; EFI firmware under TCG may take a while to print.
	banner, wait := "U-Boot", time.Minute
	if v.loader == "grub" {
		banner, wait = "\n", 3*time.Minute
	}
	if !v.waitSerial(banner, wait) {
		return fmt.Errorf("qemu started but the firmware printed nothing in %v (infrastructure): %s", wait, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// running says whether QEMU is still up.
func (v *vm) running() bool {
	if v.exited == nil {
		return false
	}
	select {
	case <-v.exited:
		return false
	default:
		return true
	}
}

// kill is the power cut: SIGKILL of QEMU, so whatever the guest had not written to its
// disk is lost.
func (v *vm) kill() {
	if v.cmd != nil && v.cmd.Process != nil && v.running() {
		syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL)
		<-v.exited
	}
}

// waitExit waits for the guest to power off or reboot (QEMU exits: -no-reboot).
func (v *vm) waitExit(d time.Duration) bool {
	if v.exited == nil {
		return true
	}
	select {
	case <-v.exited:
		return true
	case <-time.After(d):
		return false
	}
}

// serial is the console of the current boot so far, without CRs and colour codes.
func (v *vm) serial() string {
	raw, _ := os.ReadFile(v.log)
	return ansi.ReplaceAllString(strings.ReplaceAll(string(raw), "\r", ""), "")
}

// waitSerial waits until the console shows pattern (a substring), or d passes, or QEMU exits.
func (v *vm) waitSerial(pattern string, d time.Duration) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if strings.Contains(v.serial(), pattern) {
			return true
		}
		if !v.running() {
			return strings.Contains(v.serial(), pattern)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// grepSerial returns the console lines of this boot that contain s.
func (v *vm) grepSerial(s string) []string {
	var out []string
	for _, l := range strings.Split(v.serial(), "\n") {
		if strings.Contains(l, s) {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}
