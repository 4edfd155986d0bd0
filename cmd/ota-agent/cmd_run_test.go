package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/testserver"
)

// notifySink is a real unixgram NOTIFY_SOCKET collecting sd_notify datagrams.
type notifySink struct {
	mu    sync.Mutex
	lines []string
	path  string
}

func newNotifySink(t *testing.T) *notifySink {
	s := &notifySink{path: filepath.Join(t.TempDir(), "notify.sock")}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: s.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			for _, l := range strings.Split(string(buf[:n]), "\n") {
				if l != "" {
					s.lines = append(s.lines, l)
				}
			}
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *notifySink) count(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

func (s *notifySink) all() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

type daemon struct {
	cmd *exec.Cmd
	out *bytes.Buffer
	mu  *sync.Mutex
}

func (w *world) startDaemon(t *testing.T, env ...string) *daemon {
	cmd := exec.Command(bin, "--config", w.cfg, "run")
	cmd.Env = append(os.Environ(), env...)
	d := &daemon{cmd: cmd, out: &bytes.Buffer{}, mu: &sync.Mutex{}}
	cmd.Stdout, cmd.Stderr = lockedWriter{d.out, d.mu}, lockedWriter{d.out, d.mu}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return d
}

func (d *daemon) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.out.String()
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func TestDaemonNotifySignals(t *testing.T) {
	w := newWorld(t, 4096, "poll:\n  interval: 1h\n")
	sink := newNotifySink(t)
	d := w.startDaemon(t, "NOTIFY_SOCKET="+sink.path, "WATCHDOG_USEC=400000")
	waitFor(t, "READY=1", 10*time.Second, func() bool { return sink.count("READY=1") > 0 })
	waitFor(t, "the install at start", 10*time.Second, func() bool { return strings.Contains(sink.all(), "STATUS=idle, next check") })
	waitFor(t, "WATCHDOG=1", 5*time.Second, func() bool { return sink.count("WATCHDOG=1") >= 2 })
	if _, err := os.Stat(filepath.Join(w.state, "current", "scoreboard")); err != nil {
		t.Fatal("nothing installed at start")
	}
	// SIGUSR1: a check now (the origin or edge sees a second request).
	reqs := w.srv.Stats().Requests
	d.cmd.Process.Signal(syscall.SIGUSR1)
	waitFor(t, "a check after SIGUSR1", 10*time.Second, func() bool { return w.srv.Stats().Requests > reqs })
	// SIGHUP with a broken file: logged, old configuration kept, still running.
	os.WriteFile(w.cfg, []byte("server: [broken\n"), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload error", 5*time.Second, func() bool { return strings.Contains(d.log(), "configuration not reloaded") })
	reqs = w.srv.Stats().Requests
	d.cmd.Process.Signal(syscall.SIGUSR1)
	waitFor(t, "a check with the old configuration", 10*time.Second, func() bool { return w.srv.Stats().Requests > reqs })
	// SIGTERM: STOPPING=1, exit 0.
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, d.log())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10 s after SIGTERM")
	}
	if sink.count("STOPPING=1") != 1 {
		t.Fatalf("no STOPPING=1:\n%s", sink.all())
	}
}

// TestDaemonSigusr1DuringCheckFollows: a SIGUSR1 that arrives while a check runs is not
// dropped; another check follows the running one.
func TestDaemonSigusr1DuringCheckFollows(t *testing.T) {
	w := newWorld(t, 4096, "#metadata\npoll:\n  interval: 1h\n")
	w.mustAgent("check", "--once")
	w.release("scoreboard", "3.0.0", randomBytes(3<<20, 5), 60)
	w.srv.SetFaults(testserver.Faults{RateBPS: 1 << 20, PathPrefix: "/firmware/"})
	checks := func() int64 {
		st := w.srv.Stats()
		return st.Requests - st.RequestsByPath["/firmware"] - st.RequestsByPath["/trust"] - st.RequestsByPath["/delta"]
	}
	before := checks()
	d := w.startDaemon(t)
	part := filepath.Join(w.state, "downloads", "scoreboard_3.0.0")
	waitFor(t, "a partial download", 10*time.Second, func() bool {
		fi, err := os.Stat(part)
		return err == nil && fi.Size() > 256<<10
	})
	d.cmd.Process.Signal(syscall.SIGUSR1)
	waitFor(t, "the SIGUSR1 to be queued", 5*time.Second, func() bool { return strings.Contains(d.log(), "another follows it") })
	w.srv.SetFaults(testserver.Faults{})
	waitFor(t, "the queued check", 20*time.Second, func() bool { return checks() >= before+2 })
	if !strings.Contains(w.mustAgent("status").stdout, "3.0.0") {
		t.Fatalf("the running check's install did not finish:\n%s", d.log())
	}
}

// TestDaemonSigtermMidDownloadResumes: a metadata-mode download interrupted by SIGTERM
// stops the daemon at once, and the next run resumes instead of starting over.
func TestDaemonSigtermMidDownloadResumes(t *testing.T) {
	w := newWorld(t, 4096, "#metadata\npoll:\n  interval: 1h\n")
	w.mustAgent("check", "--once")
	size := 3 << 20
	w.release("scoreboard", "3.0.0", randomBytes(size, 4), 60)
	w.srv.SetFaults(testserver.Faults{RateBPS: 2 << 20, PathPrefix: "/firmware/"})
	d := w.startDaemon(t)
	part := filepath.Join(w.state, "downloads", "scoreboard_3.0.0")
	waitFor(t, "a partial download", 10*time.Second, func() bool {
		fi, err := os.Stat(part)
		return err == nil && fi.Size() > 512<<10
	})
	d.cmd.Process.Signal(syscall.SIGTERM)
	stopped := make(chan error, 1)
	go func() { stopped <- d.cmd.Wait() }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("SIGTERM did not stop the daemon mid-download")
	}
	fi, err := os.Stat(part)
	if err != nil || fi.Size() == 0 || fi.Size() >= int64(size) {
		t.Fatalf("partial file after SIGTERM: %v %v", fi, err)
	}
	have := fi.Size()
	w.srv.SetFaults(testserver.Faults{})
	before := w.srv.Stats().BytesByPath["/firmware"]
	w.mustAgent("check", "--once")
	w.mustAgent("verify")
	fetched := w.srv.Stats().BytesByPath["/firmware"] - before
	if fetched > int64(size)-have+64<<10 {
		t.Fatalf("resume fetched %d bytes; %d of %d were already here", fetched, have, size)
	}
}

func TestHealthHookRollsBackAndRefuses(t *testing.T) {
	w := newWorld(t, 4096, "hooks:\n  health: test -f $OTA_SLOT_DIR/scoreboard && ! grep -q BAD $OTA_SLOT_DIR/scoreboard\n")
	w.mustAgent("check", "--once")
	w.release("scoreboard", "4.0.0", []byte("BAD release"), 70)
	r := w.agent(nil, "check", "--once")
	// Exit 1 (README): the device runs what it ran; the message says how the hook ended.
	if r.code != 1 || !strings.Contains(r.stderr, "rolled back") || !strings.Contains(r.stderr, "hooks.health: exited with status 1)") {
		t.Fatalf("bad release: exit %d %s", r.code, r.stderr)
	}
	if w.wholeSlot() != "slots/a" {
		t.Fatal("not rolled back to slot a")
	}
	w.mustAgent("verify")
	// Not retried: the refused MD5 goes into If-None-Match, so the server sends nothing.
	before := w.srv.Stats().BytesByPath["/package"]
	if r := w.mustAgent("check", "--once"); !strings.Contains(r.stdout, "up-to-date") {
		t.Fatalf("refused release retried: %s", r.stdout)
	}
	if w.srv.Stats().BytesByPath["/package"] != before {
		t.Fatal("refused release downloaded again")
	}
	if st := w.mustAgent("status"); !strings.Contains(st.stdout, "refused: scoreboard 4.0.0") {
		t.Fatalf("status does not show the refusal:\n%s", st.stdout)
	}
	// Something else from the server is installed and committed.
	w.release("scoreboard", "4.0.1", []byte("good release"), 71)
	w.mustAgent("check", "--once")
	if st := w.mustAgent("status"); !strings.Contains(st.stdout, "4.0.1") || !strings.Contains(st.stdout, "committed") {
		t.Fatalf("good release:\n%s", st.stdout)
	} else if strings.Contains(st.stdout, "refused:") {
		t.Fatalf("the refusal outlived the app's next release (the server offers something else):\n%s", st.stdout)
	}
	w.mustAgent("verify")
	// ota-agent rollback by hand.
	w.mustAgent("rollback")
	w.mustAgent("verify")
	if st := w.mustAgent("status"); !strings.Contains(st.stdout, "scoreboard       1.0.0") {
		t.Fatalf("rollback did not return to the previous generation:\n%s", st.stdout)
	}
}

// cutDuringTrial installs 1.0.0, then kills the agent (the device loses power) while 5.0.0
// is on trial, with a health hook that takes its time.
func cutDuringTrial(t *testing.T, hooks string) *world {
	w := newWorld(t, 4096, "")
	w.mustAgent("check", "--once")
	w.writeConfig("hooks:\n  health: sleep 30\n  timeout: 60s\n" + hooks)
	w.release("scoreboard", "5.0.0", []byte("five"), 80)
	cmd := exec.Command(bin, "--config", w.cfg, "check", "--once")
	cmd.Start()
	waitFor(t, "the trial", 10*time.Second, func() bool {
		return strings.Contains(w.agent(nil, "status").stdout, "on trial")
	})
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	w.writeConfig("hooks:\n  health: \"true\"\n" + hooks)
	return w
}

func TestRestartDuringTrialRollsBack(t *testing.T) {
	w := cutDuringTrial(t, "  max_trials: 1\n")
	r := w.mustAgent("check", "--once")
	w.mustAgent("verify")
	st := w.mustAgent("status")
	if !strings.Contains(st.stdout, "scoreboard       1.0.0") || !strings.Contains(st.stdout, "refused: scoreboard 5.0.0") {
		t.Fatalf("restart during trial did not roll back:\n%s\n%s", st.stdout, r.stdout)
	}
}

// With the default max_trials (2), one power cut during the trial re-runs the health hook
// at the next start and a healthy generation is committed, not refused.
func TestPowerCutDuringTrialResumes(t *testing.T) {
	w := cutDuringTrial(t, "")
	w.mustAgent("check", "--once")
	w.mustAgent("verify")
	st := w.mustAgent("status")
	if !strings.Contains(st.stdout, "scoreboard       5.0.0") || !strings.Contains(st.stdout, "committed") || strings.Contains(st.stdout, "refused") {
		t.Fatalf("a healthy generation cut once during its trial was not committed:\n%s", st.stdout)
	}
}
