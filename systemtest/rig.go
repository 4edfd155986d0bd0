//go:build system

package systemtest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/testserver"
)

// rig is one board and the host around it: the testserver (edge + origin + firmware CDN)
// and the control endpoint on loopback, reached from the guest only through guestfwd.
type rig struct {
	t          *testing.T
	repo       string
	work       string
	arch       string
	name       string // arm64 | armhf | grub: the board, in every line
	cpu        string // cpuArch the agent reports: armv8 | armv7
	srv        *testserver.Server
	base       string // the testserver as the host reaches it (http://127.0.0.1:port)
	priv       []byte
	ctl        *ctl
	vm         *vm
	extraFiles map[string]string // added to the test overlay (path → body)
	extraLinks map[string]string // (path → symlink target)
	tree       string            // the staged rootfs: OS releases are built from it
	rootMB     int
	layout     map[string][2]int // partition → start, size (MiB)
	rng        *rand.Rand

	mu      sync.Mutex
	reqs    map[string]int // requests by path, as the testserver saw them
	ranges  []string       // the Range of every request for firmware that had one
	serials map[string]int64
	gen     int               // apps generation published
	apps    map[string]string // app → version published
	osVer   string            // OS version published ("" none)

	sent  atomic.Int64 // bytes of every answer the host sent the guest on :8080
	peers string       // a directory served at /peers/ on :8080 (make bench-peers' artifacts)

	cutsWhole int           // power cuts after which the device came back whole
	fwBefore  int64         // firmware bytes served before an OS cut's install began
	osInstall time.Duration // trigger → reboot of an uncut OS install
	install   map[string]time.Duration
}

var appNames = []string{"logger", "modem", "sensor"}

const appSize = 6 << 20

func (r *rig) logf(format string, a ...any) {
	fmt.Printf("system: %s "+format+"\n", append([]any{r.name}, a...)...)
}

func (r *rig) count(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reqs[path]
}

// startServers serves the testserver and the control endpoint on loopback ports and returns
// the guestfwd rules that make them 10.0.2.100:8080 and 10.0.2.100:9000 in the guest.
func (r *rig) startServers() []string {
	catDir := filepath.Join(r.work, "catalog")
	os.MkdirAll(filepath.Join(catDir, "blobs"), 0o755)
	os.WriteFile(filepath.Join(catDir, "catalog.json"), []byte(`{"bucket":"ota-systest","rows":[]}`), 0o644)
	cat, err := testserver.LoadCatalog(catDir)
	if err != nil {
		r.t.Fatal(err)
	}
	if r.srv, err = testserver.New(cat, testserver.Options{}); err != nil {
		r.t.Fatal(err)
	}
	h := r.srv.Handler()
	count := http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
		r.mu.Lock()
		r.reqs[q.URL.Path]++
		if rg := q.Header.Get("Range"); rg != "" && strings.HasPrefix(q.URL.Path, "/firmware/") {
			r.ranges = append(r.ranges, rg)
		}
		r.mu.Unlock()
		cw := &countingWriter{ResponseWriter: w, n: &r.sent}
		if r.peers != "" && strings.HasPrefix(q.URL.Path, "/peers/") {
			http.StripPrefix("/peers/", http.FileServer(http.Dir(r.peers))).ServeHTTP(cw, q)
			return
		}
		h.ServeHTTP(cw, q)
	})
	r.ctl = newCtl()
	self, err := os.Executable()
	if err != nil {
		r.t.Fatal(err)
	}
	var rules []string
	for _, s := range []struct {
		guest string
		h     http.Handler
	}{{"10.0.2.100:8080", count}, {"10.0.2.100:9000", r.ctl}} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			r.t.Fatal(err)
		}
		go http.Serve(l, s.h)
		if s.guest == "10.0.2.100:8080" {
			r.base = "http://" + l.Addr().String()
		}
		r.t.Cleanup(func() { l.Close() })
		rules = append(rules, fmt.Sprintf("tcp:%s-cmd:env %s=%s %s", s.guest, relayEnv, l.Addr(), self))
	}
	return rules
}

// countingWriter adds the body bytes written through it to n.
type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// publish writes a new release of app (its bytes from data, or the file at path) as the
// catalog's prod row, signed with a serial above the last, and flushes the edge.
func (r *rig) publish(app, version, path string, attr bool) {
	r.t.Helper()
	r.serials[app]++
	row := testserver.Row{App: app, Env: "prod", Version: version, File: path, Serial: r.serials[app]}
	if attr {
		row.DeviceAttr = map[string]bool{"gw": true}
	}
	row, err := r.srv.Catalog().SignRow(row, r.priv)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.srv.SetRow(row); err != nil {
		r.t.Fatal(err)
	}
	r.srv.FlushEdge()
}

// publishApps rolls out the next generation of every app: new random bytes, new version.
func (r *rig) publishApps() {
	r.gen++
	for _, app := range appNames {
		v := fmt.Sprintf("1.%d", r.gen)
		rel := "blobs/" + app + "_" + v
		buf := make([]byte, appSize)
		for i := range buf {
			buf[i] = byte(r.rng.Uint32())
		}
		if err := os.WriteFile(filepath.Join(r.work, "catalog", rel), buf, 0o644); err != nil {
			r.t.Fatal(err)
		}
		r.publish(app, v, rel, true)
		r.apps[app] = v
	}
}

func since(t time.Time) string { return time.Since(t).Round(100 * time.Millisecond).String() }

// sh runs a command in the guest; a failure to get an answer fails the test.
func (r *rig) sh(cmd string) result {
	r.t.Helper()
	res, err := r.ctl.run(r.vm, cmd, 5*time.Minute)
	if err != nil {
		r.t.Fatalf("%v\n--- serial (%s) tail:\n%s", err, r.vm.log, tail(r.vm.serial(), 40))
	}
	return res
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// boot powers the board on and waits for its helper to call in from userspace: the boot
// reached multi-user (the helper is ordered after it). Generous: TCG on 2 cores.
func (r *rig) boot(tag string) error {
	seq := r.ctl.seq()
	r.ctl.reset()
	start := time.Now()
	if err := r.vm.boot(tag); err != nil {
		return err
	}
	for time.Since(start) < 8*time.Minute {
		if r.ctl.seq() > seq {
			r.logf("  boot %d (%s) reached userspace in %s", r.vm.boots, tag, since(start))
			return nil
		}
		if !r.vm.running() {
			return fmt.Errorf("boot %d (%s): the board went down before userspace\n%s", r.vm.boots, tag, tail(r.vm.serial(), 30))
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("boot %d (%s): no userspace after 8 minutes\n%s", r.vm.boots, tag, tail(r.vm.serial(), 30))
}

// bootEnded waits for a reboot or power-off the guest started (QEMU exits: -no-reboot).
func (r *rig) bootEnded(d time.Duration) bool { return r.vm.waitExit(d) }

type osState struct {
	Committed string `json:"committed"`
	Current   struct {
		Version string `json:"version"`
		MD5     string `json:"md5"`
	} `json:"current"`
	Try    string `json:"try"`
	EnvSet bool   `json:"env_set"`
}

type status struct {
	Slot       string `json:"slot"`
	Generation int64  `json:"generation"`
	Status     string `json:"status"`
	InProgress string `json:"in_progress"`
	Apps       map[string]struct {
		Version string `json:"version"`
	} `json:"apps"`
	LastCheck *struct {
		Time   time.Time `json:"time"`
		Result string    `json:"result"`
		Error  string    `json:"error"`
		Secs   float64   `json:"duration_s"`
	} `json:"last_check"`
	Refused map[string]struct {
		App     string `json:"app"`
		Version string `json:"version"`
		Reason  string `json:"reason"`
	} `json:"refused"`
	Deferred map[string]struct {
		App     string    `json:"app"`
		Version string    `json:"version"`
		Turn    time.Time `json:"turn"`
	} `json:"deferred"`
	OS *struct {
		Booted    string            `json:"booted"`
		Try       string            `json:"try"`
		Committed string            `json:"committed"`
		Env       map[string]string `json:"env"`
		State     *osState          `json:"state"`
	} `json:"os"`
	raw string
}

func (r *rig) status() (*status, error) {
	res, err := r.ctl.run(r.vm, "ota-agent status --json", 2*time.Minute)
	if err != nil {
		return nil, err
	}
	if res.RC != 0 {
		return nil, fmt.Errorf("ota-agent status --json: exit %d: %s", res.RC, res.Output)
	}
	st := &status{raw: res.Output}
	if err := json.Unmarshal([]byte(res.Output), st); err != nil {
		return nil, fmt.Errorf("status --json: %v: %s", err, res.Output)
	}
	return st, nil
}

// converged: the apps are the generation published, the OS is the release published and
// committed, nothing is on trial.
func (r *rig) converged(st *status) bool {
	// The install is done and recorded: no update in progress, and a check on record (the
	// state is committed a moment before the check that committed it is recorded).
	if st.Status != "committed" || len(st.Apps) < len(r.apps) || st.InProgress != "" || st.LastCheck == nil {
		return false
	}
	for app, v := range r.apps {
		if st.Apps[app].Version != v {
			return false
		}
	}
	if r.osVer == "" {
		return true
	}
	return st.OS != nil && st.OS.State != nil && st.OS.State.Try == "" && st.OS.State.Current.Version == r.osVer &&
		st.OS.Booted == st.OS.State.Committed && st.OS.Env["upgrade_available"] != "1"
}

// settle waits, rebooting the board whenever the agent reboots it, until want holds; the
// last status is returned either way.
func (r *rig) settle(tag string, d time.Duration, want func(*status) bool) (*status, error) {
	end := time.Now().Add(d)
	var st *status
	var err error
	for time.Now().Before(end) {
		if !r.vm.running() {
			r.logf("  the guest rebooted itself (%s)", strings.Join(r.vm.grepSerial("reboot"), " | "))
			if err := r.boot(tag + "-reboot"); err != nil {
				return st, err
			}
		}
		st, err = r.status()
		if err == nil && want(st) {
			return st, nil
		}
		time.Sleep(3 * time.Second)
	}
	// What the agent was doing: its goroutines (SIGQUIT makes Go print them and exit; systemd
	// restarts it) and its last log lines.
	dump := r.sh("systemctl kill -s QUIT --kill-whom=main ota-agent; sleep 3; journalctl -b -u ota-agent --no-pager -o cat | tail -120").Output
	if err != nil {
		return st, fmt.Errorf("%v\n--- the agent's journal:\n%s", err, dump)
	}
	return st, fmt.Errorf("not settled after %v; last status:\n%s\n--- the agent's journal:\n%s", d, st.raw, dump)
}

// hostEnv reads the bootloader environment from the disk image with fw_printenv (U-Boot)
// or grub-editenv (GRUB), the way the host judges what the bootloader will do (board off).
func (r *rig) hostEnv() map[string]string {
	r.t.Helper()
	names := []string{"uboot.env", "uboot-redund.env"}
	if r.vm.loader == "grub" {
		names = []string{"grubenv"}
	}
	var files []string
	for _, name := range names {
		file := filepath.Join(r.work, name)
		if b, err := exec.Command("mcopy", "-o", "-i", r.vm.disk+"@@1M", "::"+name, file).CombinedOutput(); err != nil {
			r.t.Fatalf("mcopy %s: %v: %s", name, err, b)
		}
		files = append(files, file)
	}
	var out []byte
	var err error
	if r.vm.loader == "grub" {
		out, err = exec.Command("grub-editenv", files[0], "list").Output()
	} else {
		cfg := filepath.Join(r.work, "host-fw_env.config")
		os.WriteFile(cfg, []byte(files[0]+" 0x0 0x4000\n"+files[1]+" 0x0 0x4000\n"), 0o644)
		out, err = exec.Command("fw_printenv", "-c", cfg).Output()
	}
	if err != nil {
		r.t.Fatalf("reading %s: %v", strings.Join(files, ", "), err)
	}
	return parseEnv(string(out))
}

func parseEnv(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
			m[k] = v
		}
	}
	return m
}

func envString(m map[string]string) string {
	return fmt.Sprintf("ota_slot=%s upgrade_available=%s bootcount=%s", m["ota_slot"], m["upgrade_available"], m["bootcount"])
}

// keyPair makes the release signing key the image trusts.
func keyPair(t *testing.T, dir string) (priv []byte, pubPath string) {
	priv, pub, err := packaging.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pubPath = filepath.Join(dir, "release.pub.pem")
	os.WriteFile(pubPath, pub, 0o644)
	return priv, pubPath
}
