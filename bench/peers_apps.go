package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"

	"github.com/ota-agent/ota-agent/testserver"
)

// peerWorld is what every agent of the peers bench shares: four apps (app3 changes in the
// second job), their signing keys, the testserver for ota-agent and a file server for the
// peers' artifacts.
type peerWorld struct {
	b        *bench
	dir, www string
	size     int64
	src      map[string]string // app → its 1.0.0 file; "app3-2", "app3-3" its next versions
	s        *server
	pub      string
	rows     map[int]testserver.Row // app3 at version 1, 2 or 3, signed
	fs       *fileServer
}

var peerApps = []string{"app1", "app2", "app3", "app4"}

// appSteps are the apps jobs, in order (the first takes the apps' size): the four apps on a
// fresh device; app3 replaced by new random bytes (nothing to reuse); app3 rebuilt, an eighth
// of it changed in the middle, as a new build of a binary changes (ota-agent's publisher
// writes a patch from the previous version; the peers ship the file).
var appSteps = []string{"4 apps × %s, fresh device", "then app3 replaced (all bytes new)", "then app3 rebuilt (1/8 of it changed)"}

func (b *bench) newPeerWorld(size int64) *peerWorld {
	w := &peerWorld{b: b, dir: filepath.Join(b.dir, "peers"), size: size, src: map[string]string{}, rows: map[int]testserver.Row{}}
	w.www = filepath.Join(w.dir, "www")
	must(os.MkdirAll(w.www, 0o755))
	sizes := map[string]int64{}
	for _, a := range peerApps {
		sizes[a] = size
	}
	cat, pub := b.catalog("peers-catalog", sizes)
	for _, a := range peerApps {
		w.src[a] = filepath.Join(cat, "blobs", a+"_1.0.0")
	}
	w.pub = pub
	w.s = b.serve(cat, testserver.Options{})
	priv, err := os.ReadFile(filepath.Join(cat, "release.key.pem"))
	must(err)
	for _, r := range w.s.cat.Rows {
		if r.App == "app3" {
			w.rows[1] = r
		}
	}
	for v := 2; v <= 3; v++ {
		r := w.rows[v-1]
		r.Version, r.Serial, r.File = fmt.Sprintf("%d.0.0", v), r.Serial+1, fmt.Sprintf("blobs/app3_%d.0.0", v)
		next := filepath.Join(cat, r.File)
		w.src[fmt.Sprintf("app3-%d", v)] = next
		if v == 2 {
			writeRandom(next, size, 99)
		} else {
			rebuilt(w.src["app3-2"], next, 100)
			out, err := exec.Command(filepath.Join(b.bin, "ota-release"), "delta", w.src["app3-2"], next).CombinedOutput()
			if err != nil {
				fail("ota-release delta: %v %s", err, out)
			}
		}
		r, err = w.s.cat.SignRow(r, priv)
		must(err)
		w.rows[v] = r
	}
	w.fs = b.serveFiles(w.www)
	sh(fmt.Sprintf(`cd %s && openssl ecparam -genkey -name prime256v1 -noout -out mender.key && openssl ec -in mender.key -pubout -out mender.pub &&
openssl req -x509 -newkey rsa:2048 -nodes -keyout swu.key -out swu.crt -subj /CN=bench -days 30 -addext extendedKeyUsage=emailProtection`, w.dir))
	return w
}

// release puts app3 at version v on the testserver (1 before a fresh device's first job).
func (w *peerWorld) release(v int) {
	w.s.srv.SetRow(w.rows[v])
	w.s.srv.FlushEdge()
	warm(canonicalURL(w.s, "fullpayload"))
}

// job is the files a step installs: the four apps, then app3 at its next version.
func (w *peerWorld) job(step int) map[string]string {
	if step > 0 {
		return map[string]string{"app3": w.src[fmt.Sprintf("app3-%d", step+1)]}
	}
	m := map[string]string{}
	for _, a := range peerApps {
		m[a] = w.src[a]
	}
	return m
}

// full is every app at the step's versions (what an image-like artifact carries).
func (w *peerWorld) full(step int) map[string]string {
	m := w.job(0)
	if step > 0 {
		m["app3"] = w.job(step)["app3"]
	}
	return m
}

// variant is one agent in one mode doing the apps jobs.
type variant struct {
	agent, mode string
	fresh       func()                    // a new device
	prepare     func(step int)            // the server side of a step, before it is measured (nil: none)
	step        func(x *runner, step int) // runs a step of appSteps
	files       func(step int) []string   // the installed files a reader uses
	sw          string                    // the name whose rename publishes them ("" if none)
	net         func() int64              // body bytes its server has sent so far
}

func (w *peerWorld) ours(mode string) variant {
	bin := filepath.Join(w.b.bin, "ota-agent")
	cfg, state := w.b.config(w.s, w.pub, mode, "peers-"+mode)
	return variant{agent: "ota-agent", mode: mode,
		fresh:   func() { os.RemoveAll(state) },
		prepare: func(step int) { w.release(step + 1) },
		step: func(x *runner, step int) {
			x.cmd(nil, bin, "--config", cfg, "check", "--once")
		},
		files: func(step int) []string {
			target, err := os.Readlink(filepath.Join(state, "current"))
			must(err)
			var out []string
			for a := range w.job(step) {
				out = append(out, filepath.Join(state, target, a))
			}
			return out
		},
		sw: filepath.Join(state, "current"),
		net: func() int64 {
			var n int64
			for _, v := range w.s.srv.Stats().BytesByPath {
				n += v
			}
			return n
		},
	}
}

func sortedKeys(m map[string]string) []string {
	var k []string
	for a := range m {
		k = append(k, a)
	}
	sort.Strings(k)
	return k
}

// installedUnder lists dest/<app> for the step's apps.
func (w *peerWorld) installedUnder(dest string, step int) []string {
	var out []string
	for _, a := range sortedKeys(w.job(step)) {
		out = append(out, filepath.Join(dest, a))
	}
	return out
}

// rebuilt writes src with its middle eighth replaced by random bytes (seed) to dst.
func rebuilt(src, dst string, seed uint64) {
	data, err := os.ReadFile(src)
	must(err)
	n := len(data) / 8
	rand.NewChaCha8([32]byte{byte(seed), 7}).Read(data[len(data)/2-n/2:][:n])
	must(os.WriteFile(dst, data, 0o644))
}

// link puts src at dst by a hard link (a copy across filesystems).
func link(src, dst string) {
	if os.Link(src, dst) == nil {
		return
	}
	sh(fmt.Sprintf("cp %q %q", src, dst))
}
