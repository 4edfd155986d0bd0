package main

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ota-agent/ota-agent/testserver"
)

// countingProxy forwards loopback TCP and counts the bytes each way.
type countingProxy struct {
	l        net.Listener
	up, down atomic.Int64
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
			go func() {
				s, err := net.Dial("tcp", target)
				if err != nil {
					c.Close()
					return
				}
				var wg sync.WaitGroup
				wg.Add(2)
				go func() { n, _ := io.Copy(s, c); p.up.Add(n); s.(*net.TCPConn).CloseWrite(); wg.Done() }()
				go func() { n, _ := io.Copy(c, s); p.down.Add(n); c.(*net.TCPConn).CloseWrite(); wg.Done() }()
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
	up, down := p.up.Load(), p.down.Load()
	b.add(row{"bytes on the wire, one up-to-date check (HTTP/1.1, 3 apps installed)", fmt.Sprintf("%d B (request %d, 304 answer %d)", up+down, up, down), "", "", "≤ 1 KiB without the handshake", verdict(up+down <= 1024)})
}
