//go:build system

package systemtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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

	// For envWriteCuts: the disk as a qcow2 overlay (internal snapshots), an HMP monitor
	// socket, and a snapshot to resume instead of powering on.
	overlay string
	monitor string
	loadvm  string

	cpus int // vCPUs (0: one)
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
	drive := "if=virtio,file=" + v.disk + ",format=raw,cache=writeback"
	if v.overlay != "" {
		drive = "if=virtio,file=" + v.overlay + ",format=qcow2,cache=writeback"
		args = append(args, "-monitor", "unix:"+v.monitor+",server,nowait")
	} else {
		args = append(args, "-monitor", "none")
	}
	if v.loadvm != "" {
		// 32 KiB/s of writes: a 16 KiB environment copy and its FAT entry take about a
		// second to land, so a cut at a random moment finds one in flight.
		args = append(args, "-loadvm", v.loadvm)
		drive += ",throttling.bps-write=32768"
	}
	// One vCPU unless asked: the boards share the runner's 2 cores, and a second vCPU per
	// board only adds threads that wait on each other under TCG (the bench's board, alone on
	// the host, has two).
	return append(args, "-smp", strconv.Itoa(max(v.cpus, 1)), "-m", "1024", "-drive", drive,
		"-netdev", netdev, "-device", "virtio-net-pci,netdev=n0,romfile=",
		"-display", "none", "-serial", "file:"+v.log, "-no-reboot")
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
	if v.loadvm != "" {
		// A snapshot resumes where it was taken: no firmware prints. A QEMU that cannot
		// load it exits at once.
		if v.waitExit(3 * time.Second) {
			return fmt.Errorf("qemu -loadvm %s exited (infrastructure): %s", v.loadvm, strings.TrimSpace(stderr.String()))
		}
		return nil
	}
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

// hmp sends one command to the QEMU monitor and returns its answer (up to the next prompt).
func (v *vm) hmp(cmd string, d time.Duration) (string, error) {
	c, err := net.DialTimeout("unix", v.monitor, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(d))
	var buf bytes.Buffer
	prompt := func() error {
		b := make([]byte, 4096)
		for !strings.HasSuffix(buf.String(), "(qemu) ") {
			n, err := c.Read(b)
			if err != nil {
				return fmt.Errorf("monitor: %v after %q", err, buf.String())
			}
			buf.Write(b[:n])
		}
		return nil
	}
	if err := prompt(); err != nil {
		return "", err
	}
	buf.Reset()
	if _, err := c.Write([]byte(cmd + "\n")); err != nil {
		return "", err
	}
	if err := prompt(); err != nil {
		return "", err
	}
	out := strings.TrimSuffix(ansi.ReplaceAllString(strings.ReplaceAll(buf.String(), "\r", ""), ""), "(qemu) ")
	_, out, _ = strings.Cut(out, "\n") // the echoed command
	return strings.TrimSpace(out), nil
}
