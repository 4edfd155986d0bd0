package testserver

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync/atomic"
)

// ConnectProxy is a small HTTPS (CONNECT) proxy for tests: it tunnels every CONNECT, whatever
// host it names, to one loopback target, so a test can use a real host name (the agent never
// resolves it; the proxy does) without any traffic leaving the machine.
type ConnectProxy struct {
	l        net.Listener
	Connects atomic.Int64
	Refuse   atomic.Bool // answer 403 to every CONNECT
}

// NewConnectProxy listens on loopback and tunnels to target ("127.0.0.1:port").
func NewConnectProxy(target string) (*ConnectProxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &ConnectProxy{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.handle(c, target)
		}
	}()
	return p, nil
}

// URL is the proxy's http:// URL.
func (p *ConnectProxy) URL() string { return "http://" + p.l.Addr().String() }

// Close stops accepting.
func (p *ConnectProxy) Close() error { return p.l.Close() }

func (p *ConnectProxy) handle(c net.Conn, target string) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
		return
	}
	p.Connects.Add(1)
	if p.Refuse.Load() {
		io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
		return
	}
	s, err := net.Dial("tcp", target)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer s.Close()
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	go io.Copy(s, br)
	io.Copy(c, s)
}
