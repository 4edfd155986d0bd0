package main

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/internal/testenv"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/testserver"
)

// server is the real testserver, in this process, on loopback.
type server struct {
	srv  *testserver.Server
	base string
	cat  *testserver.Catalog
	stop func()
}

// catalog writes a signed catalog of prod rows: os_armv8 plus apps selected by attrGamer.
func (b *bench) catalog(name string, sizes map[string]int64) (dir, pubPath string) {
	dir = filepath.Join(b.dir, name)
	must(os.MkdirAll(filepath.Join(dir, "blobs"), 0o755))
	var apps []string
	for a := range sizes {
		apps = append(apps, a)
	}
	sort.Strings(apps)
	cat := map[string]any{"bucket": "bench-bucket"}
	var rows []map[string]any
	for i, app := range apps {
		file := "blobs/" + app + "_1.0.0"
		writeRandom(filepath.Join(dir, file), sizes[app], uint64(i+1))
		r := map[string]any{"app": app, "env": "prod", "version": "1.0.0", "file": file}
		if !strings.HasPrefix(app, "os_") {
			r["deviceAttr"] = map[string]bool{"gamer": true}
		}
		rows = append(rows, r)
	}
	cat["rows"] = rows
	raw, _ := json.Marshal(cat)
	must(os.WriteFile(filepath.Join(dir, "catalog.json"), raw, 0o644))
	priv, pub, err := packaging.GenerateKey()
	must(err)
	c, err := testserver.LoadCatalog(dir)
	must(err)
	must(c.SignRows(priv))
	must(os.WriteFile(filepath.Join(dir, "release.key.pem"), priv, 0o600)) // the peers bench releases more
	pubPath = filepath.Join(dir, "release.pub.pem")
	must(os.WriteFile(pubPath, pub, 0o644))
	return dir, pubPath
}

func writeRandom(path string, size int64, seed uint64) {
	f, err := os.Create(path)
	must(err)
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{byte(seed), 42})
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		rng.Read(buf[:n])
		_, err := f.Write(buf[:n])
		must(err)
		left -= n
	}
}

func (b *bench) serve(catDir string, opts testserver.Options) *server {
	cat, err := testserver.LoadCatalog(catDir)
	must(err)
	opts.SpoolDir = filepath.Join(b.dir, "spool-"+filepath.Base(catDir))
	must(os.MkdirAll(opts.SpoolDir, 0o755))
	ts, err := testenv.Serve(cat, opts)
	must(err)
	return &server{srv: ts.Srv, base: strings.Replace(ts.Base, "https://", "http://", 1), cat: cat, stop: ts.Stop}
}

// config writes an agent configuration for srv into a fresh state directory.
func (b *bench) config(s *server, pub, payload, name string) (cfg, state string) {
	return b.configWith(s, pub, payload, name, "poll:\n  interval: 1h\n")
}

// configWith is config with extra YAML (the poll section).
func (b *bench) configWith(s *server, pub, payload, name, extra string) (cfg, state string) {
	state = filepath.Join(b.dir, "state-"+name)
	os.RemoveAll(state)
	cfg = filepath.Join(b.dir, "config-"+name+".yaml")
	y := testenv.Config(testenv.ConfigOptions{Base: s.base, Bucket: s.cat.Bucket, PubPath: pub, StateDir: state,
		Payload: payload, Attributes: "{gamer: prod}", Extra: extra})
	must(os.WriteFile(cfg, []byte(y), 0o644))
	return cfg, state
}

// proc is one finished subprocess: wall time and peak RSS.
type proc struct {
	wall  time.Duration
	maxKB int64
	out   string
	err   error
}

// run starts a subprocess and samples its VmHWM until it exits (rusage's maxrss would
// include this process's own RSS inherited at fork).
func (b *bench) run(name string, args ...string) proc {
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		fail("%s: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var peak int64
	for {
		if h := vmHWM(cmd.Process.Pid); h > peak {
			peak = h
		}
		select {
		case err := <-done:
			return proc{wall: time.Since(start), maxKB: peak, out: out.String(), err: err}
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func (b *bench) agent(args ...string) proc {
	p := b.run(filepath.Join(b.bin, "ota-agent"), args...)
	if p.err != nil {
		fail("ota-agent %v: %v\n%s", args, p.err, p.out)
	}
	return p
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// canonicalURL is what the agent asks for: warm the edge with it.
func canonicalURL(s *server, payload string) string {
	return s.base + "/package?attrgamer=prod&cpuarch=armv8&os=prod&payloadtype=" + payload
}

func warm(url string) {
	req, _ := http.NewRequest("GET", url, nil)
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	must(err)
	buf := make([]byte, 1<<20)
	for {
		if _, err := resp.Body.Read(buf); err != nil {
			break
		}
	}
	resp.Body.Close()
}

func vmHWM(pid int) int64 { return procField(pid, "VmHWM:") }
