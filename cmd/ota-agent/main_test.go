package main

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/internal/testenv"
	"github.com/ota-agent/ota-agent/testserver"
)

// bin is the ota-agent binary built for these tests: they exercise the real process
// (exit codes, signals, sd_notify, crashes).
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ota-agent-bin-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "ota-agent")
	if out, err := exec.Command("go", "build", "-tags", "otatest,"+testenv.AgentTags, "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build ota-agent: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	tools.Range(func(_, v any) bool {
		if b := v.(*builtTool); b.path != "" {
			os.RemoveAll(filepath.Dir(b.path))
		}
		return true
	})
	os.Exit(code)
}

// world is a signed sample catalog behind the real testserver, and a config for it.
type world struct {
	t       *testing.T
	tw      *testenv.World
	dir     string
	cat     *testserver.Catalog
	srv     *testserver.Server
	base    string
	privPEM []byte
	cfg     string
	state   string
}

func newWorld(t *testing.T, size int64, extra string) *world {
	return newWorldWith(t, size, extra, testserver.Options{})
}

func newWorldWith(t *testing.T, size int64, extra string, opts testserver.Options) *world {
	t.Helper()
	w := &world{t: t, dir: t.TempDir()}
	opts.SpoolDir = t.TempDir()
	tw, err := testenv.NewWorld(w.dir, size, 5, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tw.Stop)
	w.tw, w.cat, w.srv, w.base, w.privPEM = tw, tw.Cat, tw.Srv, tw.Base, tw.PrivPEM
	w.state = filepath.Join(w.dir, "state")
	w.writeConfig(extra)
	return w
}

// writeConfig writes the world's configuration plus extra sections; "#metadata" in extra
// asks for metadata mode.
func (w *world) writeConfig(extra string) {
	w.cfg = filepath.Join(w.dir, "config.yaml")
	payload := "full"
	if strings.Contains(extra, "#metadata") {
		payload = "metadata"
	}
	os.WriteFile(w.cfg, []byte(w.tw.Config(w.state, payload, "{gamer: prod}", extra)), 0o644)
}

type outcome struct {
	code           int
	stdout, stderr string
	maxRSS         int64 // bytes: the process's VmHWM, sampled while it runs (rusage's maxrss would count this test process, whose memory the child shares until exec)
}

func (w *world) agent(env []string, args ...string) outcome {
	w.t.Helper()
	return w.run(env, append([]string{"--config", w.cfg}, args...)...)
}

// run runs ota-agent with exactly args (no --config of the world's).
func (w *world) run(env []string, args ...string) outcome {
	w.t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var rss int64
	var err error
	for waiting := true; waiting; {
		rss = max(rss, vmHWM(cmd.Process.Pid))
		select {
		case err = <-done:
			waiting = false
		case <-time.After(2 * time.Millisecond):
		}
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		w.t.Fatal(err)
	}
	return outcome{code, o.String(), e.String(), rss}
}

func (w *world) mustAgent(args ...string) outcome {
	w.t.Helper()
	r := w.agent(nil, args...)
	if r.code != 0 {
		w.t.Fatalf("ota-agent %v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

// release publishes new bytes for (app, prod) with a serial above everything so far.
func (w *world) release(app, version string, data []byte, serial int64) {
	w.t.Helper()
	w.releaseWith(app, version, data, serial, w.privPEM)
}

// releaseWith is release signed by each of keys (PEM).
func (w *world) releaseWith(app, version string, data []byte, serial int64, keys ...[]byte) {
	w.t.Helper()
	var r testserver.Row
	for _, x := range w.srv.Catalog().Rows {
		if x.App == app && x.Env == "prod" {
			r = x
		}
	}
	r.Version, r.Serial, r.File = version, serial, "blobs/"+app+"_"+version
	os.WriteFile(filepath.Join(w.cat.Dir(), r.File), data, 0o644)
	r, err := w.cat.SignRow(r, keys...)
	if err != nil {
		w.t.Fatal(err)
	}
	w.srv.SetRow(r)
	w.srv.FlushEdge()
}

// wholeSlot asserts the invariant after any crash: `current` names a slot whose files are
// exactly what its manifest lists, byte for byte.
func (w *world) wholeSlot() string {
	w.t.Helper()
	target, err := os.Readlink(filepath.Join(w.state, "current"))
	if err != nil {
		w.t.Fatalf("no current link: %v", err)
	}
	dir := filepath.Join(w.state, target)
	raw, err := os.ReadFile(filepath.Join(dir, ".manifest.json"))
	if err != nil {
		w.t.Fatalf("active slot %s has no manifest: %v", target, err)
	}
	var m struct {
		Apps map[string]struct {
			MD5 string `json:"md5"`
		} `json:"apps"`
	}
	json.Unmarshal(raw, &m)
	entries, _ := os.ReadDir(dir)
	if len(entries) != len(m.Apps)+1 {
		w.t.Fatalf("slot %s holds %d files, manifest lists %d apps", target, len(entries)-1, len(m.Apps))
	}
	for app, x := range m.Apps {
		b, err := os.ReadFile(filepath.Join(dir, app))
		h := md5.Sum(b)
		if err != nil || hex.EncodeToString(h[:]) != x.MD5 {
			w.t.Fatalf("slot %s: %s differs from its manifest", target, app)
		}
	}
	return target
}

func randomBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		seed = seed*31 + byte(i>>8) + 7
		b[i] = seed ^ byte(i)
	}
	return b
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// vmHWM is a running process's peak resident set (bytes) since its exec.
func vmHWM(pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}
