package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/ota-agent/ota-agent/testserver"
	"golang.org/x/sys/unix"
)

// checkResultLine: the result line starts a clean terminal line (the progress line was
// cleared before it).
func checkResultLine(t *testing.T, out string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, "updated: ") {
			continue
		}
		visible := line
		if i := strings.LastIndex(line, "\033[K"); i >= 0 {
			visible = line[i+3:]
		}
		if !strings.HasPrefix(strings.TrimLeft(visible, "\r"), "updated: ") {
			t.Fatalf("the result line shares the terminal line with progress: %q", line)
		}
		return
	}
	t.Fatalf("no result line:\n%q", out)
}

// openPTY returns a pseudo-terminal's master and slave.
func openPTY(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("SKIPPED: no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("SKIPPED: cannot unlock a pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("SKIPPED: no pseudo-terminal number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("SKIPPED: cannot open the pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// On a terminal, check --once draws one progress line (bytes, percent, rate, time left) that
// log lines never share; without -v only warnings and errors are logged there.
func TestTerminalProgressLine(t *testing.T) {
	w := newWorld(t, 8192, "#metadata\n")
	w.mustAgent("check", "--once")
	w.release("scoreboard", "6.0.0", randomBytes(300000, 7), 60)
	w.srv.SetFaults(testserver.Faults{RateBPS: 100000, PathPrefix: "/firmware"})
	run := func(args ...string) string {
		m, s := openPTY(t)
		var out bytes.Buffer
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); io.Copy(&out, m) }()
		cmd := exec.Command(bin, append([]string{"--config", w.cfg}, args...)...)
		cmd.Stdout, cmd.Stderr = s, s // one terminal, as a person sees it
		if err := cmd.Run(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out.String())
		}
		s.Close()
		wg.Wait()
		return out.String()
	}
	out := run("-v", "check", "--once")
	progress, logs := 0, 0
	for _, line := range strings.Split(out, "\n") {
		visible := line
		if i := strings.LastIndex(line, "\033[K"); i >= 0 {
			visible = line[i+3:]
		}
		visible = strings.TrimRight(visible, "\r")
		if strings.Contains(visible, "level=") {
			logs++
			if !strings.HasPrefix(visible, "time=") {
				t.Errorf("a log line shares the terminal line with progress: %q", visible)
			}
		}
		for _, seg := range strings.Split(line, "\033[K") {
			if strings.Contains(seg, "downloading scoreboard 6.0.0:") && strings.Contains(seg, "%)") && strings.Contains(seg, "/s, ") && strings.Contains(seg, "left") {
				progress++
			}
		}
	}
	if progress == 0 || logs == 0 {
		t.Fatalf("%d progress lines with bytes, percent, rate and time left, %d log lines:\n%q", progress, logs, out)
	}
	checkResultLine(t, out)
	// Full payload: the progress of a member; no rate far above the server's cap.
	w.writeConfig("")
	w.release("scoreboard", "6.0.2", randomBytes(300000, 9), 62)
	w.srv.SetFaults(testserver.Faults{RateBPS: 100000})
	out = run("check", "--once")
	checkResultLine(t, out)
	for _, m := range regexp.MustCompile(`([0-9.]+) (B|KiB|MiB|GiB)/s`).FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		if v *= map[string]float64{"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[m[2]]; v > 300000 {
			t.Fatalf("a rate of %s %s/s with the server capped at 100000 B/s:\n%q", m[1], m[2], out)
		}
	}
	// Without -v: no INFO lines on the terminal.
	w.release("scoreboard", "6.0.3", randomBytes(1000, 8), 63)
	if out := run("check", "--once"); strings.Contains(out, "level=INFO") {
		t.Fatalf("INFO logged on a terminal without -v:\n%q", out)
	}
}
