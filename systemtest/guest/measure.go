package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// measured is what `ota-systest-guest measure` prints: one install by one agent, as make
// bench-peers' OS-image row reads it.
type measured struct {
	RC      int     `json:"rc"`
	WallS   float64 `json:"wall_s"`
	CPUS    float64 `json:"cpu_s"`     // user+sys of the command and its waited children (+ the service's, -service)
	RSSKB   int64   `json:"maxrss_kb"` // the largest of those processes
	EnvS    float64 `json:"env_s"`     // when the bootloader environment first asked to try (-1: never)
	Output  string  `json:"output"`    // its last lines
	Service string  `json:"service,omitempty"`
	// Outside is what the block devices other than the slot took during the run (the
	// kernel's sectors-written counters, synced before and after): state directories,
	// temporary files, logs, the environment.
	Outside int64 `json:"outside_bytes"`
}

// measureMain runs a command and reports its wall time, CPU and peak RSS, and when the U-Boot
// environment file first held every -want pair. -service names a daemon (by its comm) that
// does the work for the command (RAUC's D-Bus service): its CPU ticks and VmHWM count too.
//
//	ota-systest-guest measure [-env FILE] [-want k=v,k=v] [-service NAME] -- CMD ARGS...
func measureMain(args []string) {
	fs := flag.NewFlagSet("measure", flag.ExitOnError)
	envFile := fs.String("env", "/boot/firmware/uboot.env,/boot/firmware/uboot-redund.env", "the U-Boot environment files")
	want := fs.String("want", "", "k=v,... that ask the bootloader to try the new slot")
	service := fs.String("service", "", "a daemon (comm) that does the work")
	slot := fs.String("slot", "vda3", "the partition written (its writes are not counted outside)")
	fs.Parse(args)
	if fs.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "measure: no command")
		os.Exit(2)
	}
	pairs := map[string]string{}
	for _, kv := range strings.Split(*want, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			pairs[k] = v
		}
	}
	m := measured{EnvS: -1}
	var pid int
	var ticks0 int64
	if *service != "" {
		pid = findComm(*service)
		if pid == 0 {
			fmt.Fprintf(os.Stderr, "measure: no process %q is running\n", *service)
			os.Exit(2)
		}
		ticks0, _ = procTicks(pid)
		m.Service = fmt.Sprintf("%s[%d]", *service, pid)
	}
	outside0 := writtenOutside(*slot)
	start := time.Now()
	done := make(chan struct{})
	envAt := make(chan float64, 1)
	go watchEnv(*envFile, pairs, start, done, envAt)
	cmd := exec.Command(fs.Arg(0), fs.Args()[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	m.WallS = time.Since(start).Seconds()
	close(done)
	m.EnvS = <-envAt
	if err != nil {
		m.RC = -1
		if ee, ok := err.(*exec.ExitError); ok {
			m.RC = ee.ExitCode()
		}
		fmt.Fprintln(&out, err)
	}
	m.Outside = writtenOutside(*slot) - outside0
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	m.CPUS = tv(ru.Utime) + tv(ru.Stime)
	m.RSSKB = int64(ru.Maxrss) // int32 on 32-bit ARM
	if pid != 0 {
		ticks1, hwm := procTicks(pid)
		m.CPUS += float64(ticks1-ticks0) / 100 // USER_HZ
		m.RSSKB = max(m.RSSKB, hwm)
	}
	o := out.String()
	if m.EnvS < 0 && len(pairs) > 0 { // say what the environment files held
		for _, file := range strings.Split(*envFile, ",") {
			raw, err := os.ReadFile(file)
			fmt.Fprintf(&out, "\n%s: %d bytes, %v", file, len(raw), err)
			if len(raw) > 5 {
				crc := binary.LittleEndian.Uint32(raw)
				fmt.Fprintf(&out, ", crc %08x, redundant %v, single %v, head %q", crc, crc32.ChecksumIEEE(raw[5:]) == crc, crc32.ChecksumIEEE(raw[4:]) == crc, raw[:min(len(raw), 80)])
			}
		}
		o = out.String()
	}
	if len(o) > 3000 {
		o = o[len(o)-3000:]
	}
	m.Output = o
	json.NewEncoder(os.Stdout).Encode(m)
}

// writtenOutside syncs, then sums the bytes written to the disk's partitions other than
// slot (/proc/diskstats: sectors written, 512 bytes each).
func writtenOutside(slot string) int64 {
	syscall.Sync()
	raw, _ := os.ReadFile("/proc/diskstats")
	var n int64
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 || f[2] == slot || !strings.HasPrefix(f[2], "vda") || f[2] == "vda" {
			continue
		}
		sec, _ := strconv.ParseInt(f[9], 10, 64)
		n += sec * 512
	}
	return n
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// watchEnv polls the environment file until done; it sends the first time all of want held.
func watchEnv(file string, want map[string]string, start time.Time, done chan struct{}, at chan float64) {
	found := -1.0
	defer func() { at <- found }()
	for {
		if found < 0 && len(want) > 0 && envHas(file, want) {
			found = time.Since(start).Seconds()
		}
		select {
		case <-done:
			if found < 0 && len(want) > 0 && envHas(file, want) {
				found = time.Since(start).Seconds()
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// envHas parses U-Boot environment files (comma-separated; CRC32, a flag byte in a redundant
// copy, then NUL-separated k=v up to a double NUL) and says whether the copy U-Boot would
// use has every pair of want: of the copies whose CRC holds, the one with the newer flag
// (one more than the other's, 0 after 255). An older copy still holds what was there
// before the last write and says nothing.
func envHas(files string, want map[string]string) bool {
	var best map[string]string
	var bestFlag int
	for _, file := range strings.Split(files, ",") {
		vars, flag, ok := readEnvCopy(file)
		if !ok {
			continue
		}
		if best == nil || flag >= 0 && bestFlag >= 0 && byte(flag) == byte(bestFlag+1) {
			best, bestFlag = vars, flag
		}
	}
	for k, v := range want {
		if best == nil || best[k] != v {
			return false
		}
	}
	return true
}

// readEnvCopy reads one copy: its variables and its flag (-1: the single-copy format).
func readEnvCopy(file string) (map[string]string, int, bool) {
	raw, err := os.ReadFile(file)
	if err != nil || len(raw) < 5 {
		return nil, 0, false
	}
	data, flag := raw[4:], -1
	if crc := binary.LittleEndian.Uint32(raw); crc32.ChecksumIEEE(raw[5:]) == crc {
		data, flag = raw[5:], int(raw[4])
	} else if crc32.ChecksumIEEE(data) != crc {
		return nil, 0, false
	}
	got := map[string]string{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if len(kv) == 0 {
			break // the end of the environment: what follows is an older write's
		}
		if k, v, ok := strings.Cut(string(kv), "="); ok {
			got[k] = v
		}
	}
	return got, flag, true
}

// findComm is the pid of the process whose comm is name (0: none).
func findComm(name string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if c, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")); err == nil && strings.TrimSpace(string(c)) == name {
			return pid
		}
	}
	return 0
}

// procTicks is a process's utime+stime+cutime+cstime (clock ticks) and its VmHWM (KiB).
func procTicks(pid int) (ticks, hwmKB int64) {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(raw)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		f := strings.Fields(s[i+1:])
		// after the comm: state is field 3, utime..cstime are fields 14..17
		for _, idx := range []int{11, 12, 13, 14} {
			if idx < len(f) {
				n, _ := strconv.ParseInt(f[idx], 10, 64)
				ticks += n
			}
		}
	}
	st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			hwmKB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return ticks, hwmKB
}

// fetchMain copies a URL to a file and fsyncs it: how a RAUC bundle reaches the device (RAUC
// 1.8 reads HTTP only by streaming a verity bundle through nbd).
//
//	ota-systest-guest fetch URL FILE
func fetchMain(args []string) {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: ota-systest-guest fetch URL FILE")
		os.Exit(2)
	}
	resp, err := http.Get(args[0])
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", args[0], resp.Status)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fetch:", err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	f, err := os.Create(args[1])
	if err == nil {
		_, err = io.Copy(f, resp.Body)
		if err == nil {
			err = f.Sync()
		}
		f.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fetch:", err)
		os.Exit(1)
	}
}
