package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ota-agent/ota-agent/agent"
	"github.com/ota-agent/ota-agent/testserver"
)

// countingProxy forwards loopback TCP and counts the bytes each way.
type countingProxy struct {
	l        net.Listener
	up, down atomic.Int64
	active   sync.WaitGroup
}

// settle waits until every proxied connection is closed and counted.
func (p *countingProxy) settle() {
	done := make(chan struct{})
	go func() { p.active.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

// countReader counts what passes as it passes (a kept-alive connection is counted live).
type countReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func newProxy(target string) *countingProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	p := &countingProxy{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.active.Add(1)
			go func() {
				defer p.active.Done()
				s, err := net.Dial("tcp", target)
				if err != nil {
					c.Close()
					return
				}
				var wg sync.WaitGroup
				wg.Add(2)
				go func() { io.Copy(s, countReader{c, &p.up}); s.(*net.TCPConn).CloseWrite(); wg.Done() }()
				go func() { io.Copy(c, countReader{s, &p.down}); c.(*net.TCPConn).CloseWrite(); wg.Done() }()
				wg.Wait()
				c.Close()
				s.Close()
			}()
		}
	}()
	return p
}

// wire: bytes of one up-to-date check, request and 304 answer with headers (HTTP/1.1).
func (b *bench) wire() {
	dir, pub := b.catalog("wire", map[string]int64{"os_armv8": 1 << 20, "scoreboard": 1 << 20, "videoStreamer": 1 << 20})
	s := b.serve(dir, testserver.Options{})
	defer s.stop()
	cfg, _ := b.config(s, pub, "full", "wire")
	b.agent("--config", cfg, "check", "--once")
	p := newProxy(strings.TrimPrefix(s.base, "http://"))
	defer p.l.Close()
	b.agent("--config", cfg, "--server-url", "http://"+p.l.Addr().String()+"/package", "check", "--once")
	p.settle()
	up, down := p.up.Load(), p.down.Load()
	b.add(row{"bytes on the wire, one up-to-date check (HTTP/1.1, 3 apps installed)", fmt.Sprintf("%d B (request %d, 304 answer %d)", up+down, up, down), "", "", "≤ 1 KiB without the handshake", verdict(up+down <= 1024)})
	b.wireTLS(dir, pub)
}

// wireTLS: the same check over a fresh HTTPS connection, with a full handshake and with a
// resumed session (the daemon keeps a session cache between checks).
func (b *bench) wireTLS(catDir, pub string) {
	tlsDir := filepath.Join(b.dir, "wire-tls")
	_, cert, err := testserver.GenerateTLS(tlsDir, []string{"127.0.0.1"})
	must(err)
	s := b.serve(catDir, testserver.Options{TLS: &testserver.TLSOptions{Cert: cert}})
	defer s.stop()
	s.base = strings.Replace(s.base, "http://", "https://", 1)
	p := newProxy(strings.TrimPrefix(s.base, "https://"))
	defer p.l.Close()
	cfgPath, _ := b.config(s, pub, "full", "wire-tls")
	raw, _ := os.ReadFile(cfgPath)
	must(os.WriteFile(cfgPath, []byte(strings.Replace(string(raw), "server:\n", "server:\n  ca_file: "+filepath.Join(tlsDir, "ca.pem")+"\n", 1)), 0o644))
	b.agent("--config", cfgPath, "check", "--once")
	cfg, err := agent.LoadConfig(cfgPath, "", agent.Overrides{"server.url": "https://" + p.l.Addr().String() + "/package"})
	must(err)
	a, err := agent.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	must(err)
	var sizes []int64
	for i := 0; i < 2; i++ {
		before := p.up.Load() + p.down.Load()
		res, err := a.Check(context.Background(), agent.CheckOptions{})
		if err != nil || res.Result != agent.ResultUpToDate {
			fail("wire TLS check: %+v %v", res, err)
		}
		a.CloseIdleConnections()
		p.settle()
		sizes = append(sizes, p.up.Load()+p.down.Load()-before)
	}
	b.add(row{"bytes on the wire, one up-to-date check over a fresh HTTPS connection", fmt.Sprintf("resumed session: %d B", sizes[1]), fmt.Sprintf("full handshake: %d B", sizes[0]),
		fmt.Sprintf("%.2f×", float64(sizes[1])/float64(sizes[0])), "resumption saves the certificate chain", "info"})
}
