// Package testenv is the world the end-to-end tests and the benchmarks run the agent in: a
// catalog signed with a fresh release key, the real test server on a loopback port, and an
// agent configuration for it. Loopback only.
package testenv

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/ota-agent/ota-agent/internal/atomicfile"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/testserver"
)

// AgentTags are the build tags of every ota-agent binary (the Makefile's AGENT_TAGS): the
// agent speaks HTTP/1.1 only (protocol.md 1.4), so net/http's HTTP/2 is left out.
const AgentTags = "nethttpomithttp2"

// AgentGCFlags are the compiler flags of every ota-agent binary (the Makefile's
// AGENT_GCFLAGS): the project's own packages are not inlined (binary size).
const AgentGCFlags = "github.com/ota-agent/ota-agent/...=-l"

// Server is the test server running on loopback.
type Server struct {
	Srv  *testserver.Server
	Base string // http://127.0.0.1:port
	Stop func()
}

// Serve serves cat with opts on a free loopback port until Stop.
func Serve(cat *testserver.Catalog, opts testserver.Options) (*Server, error) {
	srv, err := testserver.New(cat, opts)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, l); close(done) }()
	base := "http://" + l.Addr().String()
	if opts.TLS != nil {
		base = "https://" + l.Addr().String()
	}
	return &Server{Srv: srv, Base: base, Stop: func() { cancel(); <-done; srv.Close() }}, nil
}

// Keys makes a release key pair in dir: the private key's PEM and the public key's file.
func Keys(dir string) (privPEM []byte, pubPath string, err error) {
	priv, pub, err := packaging.GenerateKey()
	if err != nil {
		return nil, "", err
	}
	pubPath = filepath.Join(dir, "release.pub.pem")
	return priv, pubPath, atomicfile.Write(pubPath, pub, 0o644)
}

// World is the sample catalog (protocol.md 1.1) signed with a fresh key, served on loopback.
type World struct {
	Dir     string
	Cat     *testserver.Catalog
	PrivPEM []byte
	PubPath string
	*Server
}

// NewWorld writes the sample catalog under dir (size bytes a binary, seeded) and serves it.
func NewWorld(dir string, size int64, seed uint64, opts testserver.Options) (*World, error) {
	w := &World{Dir: dir}
	var err error
	if w.PrivPEM, w.PubPath, err = Keys(dir); err != nil {
		return nil, err
	}
	if w.Cat, err = testserver.WriteSample(filepath.Join(dir, "catalog"), size, seed, w.PrivPEM); err != nil {
		return nil, err
	}
	if opts.SpoolDir == "" {
		opts.SpoolDir = filepath.Join(dir, "spool")
	}
	w.Server, err = Serve(w.Cat, opts)
	return w, err
}

// ConfigOptions shape an agent configuration.
type ConfigOptions struct {
	Base, Bucket, PubPath, StateDir string
	Payload                         string // "" for the default (auto)
	Attributes                      string // YAML flow map, e.g. {gamer: prod}
	Extra                           string // YAML appended; a top-level section here replaces the default one
}

// Config is an agent configuration (YAML) for a test server.
func Config(o ConfigOptions) string {
	payload := ""
	if o.Payload != "" {
		payload = "  payload: " + o.Payload + "\n"
	}
	y := fmt.Sprintf("server:\n  url: %s/package\n%s  firmware: {%s: %s/firmware/}\ndevice:\n  cpu_arch: armv8\n  attributes: %s\nstate_dir: %s\nruntime_dir: %s.run\ntrust:\n  keys: [%s]\n",
		o.Base, payload, o.Bucket, o.Base, o.Attributes, o.StateDir, o.StateDir, o.PubPath)
	return MergeYAML(y, o.Extra)
}

// Config is an agent configuration for the world's server.
func (w *World) Config(state, payload, attributes, extra string) string {
	return Config(ConfigOptions{Base: w.Base, Bucket: w.Cat.Bucket, PubPath: w.PubPath, StateDir: state, Payload: payload, Attributes: attributes, Extra: extra})
}

// MergeYAML lets extra replace whole top-level sections of base (and add new ones).
func MergeYAML(base, extra string) string {
	sections := map[string]string{}
	var order []string
	for _, doc := range []string{base, extra} {
		cur := ""
		for _, line := range strings.Split(doc, "\n") {
			if line == "" {
				continue
			}
			if !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "#") {
				cur = strings.SplitN(line, ":", 2)[0]
				if _, seen := sections[cur]; !seen {
					order = append(order, cur)
				}
				if doc == extra {
					sections[cur] = ""
				}
			}
			sections[cur] += line + "\n"
		}
	}
	var b strings.Builder
	for _, k := range order {
		b.WriteString(sections[k])
	}
	return b.String()
}
