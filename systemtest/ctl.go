//go:build system

package systemtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// relayEnv makes the test binary a one-connection relay: QEMU's guestfwd runs it for every
// connection the guest opens to a forwarded address, with the connection on stdin/stdout,
// and it carries the bytes to the host's loopback port named in the variable.
const relayEnv = "OTA_SYSTEST_RELAY"

func relay(addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
	done := make(chan struct{}, 2)
	go func() { io.Copy(c, os.Stdin); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(os.Stdout, c); os.Stdout.Close(); done <- struct{}{} }()
	<-done
	<-done
	os.Exit(0)
}

// ctl is the host side of the guest helper (systemtest/guest): it hands out shell commands
// and collects their results; each request names the boot it comes from.
type ctl struct {
	mu      sync.Mutex
	boot    string // boot_id of the latest helper that asked
	bootSeq int
	queue   chan command
	waiting map[int]chan result
	nextID  int
}

type command struct {
	ID      int    `json:"id"`
	Cmd     string `json:"cmd"`
	Timeout int    `json:"timeout"`
}

type result struct {
	ID     int    `json:"id"`
	Boot   string `json:"boot"`
	RC     int    `json:"rc"`
	Output string `json:"output"`
}

func newCtl() *ctl {
	return &ctl{queue: make(chan command, 16), waiting: map[int]chan result{}}
}

func (c *ctl) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/next":
		c.mu.Lock()
		if b := r.URL.Query().Get("boot"); b != c.boot {
			c.boot = b
			c.bootSeq++
		}
		c.mu.Unlock()
		select {
		case cmd := <-c.queue:
			json.NewEncoder(w).Encode(cmd)
		case <-time.After(20 * time.Second):
			w.Write([]byte("{}"))
		case <-r.Context().Done():
		}
	case "/result":
		var res result
		if json.NewDecoder(r.Body).Decode(&res) == nil {
			c.mu.Lock()
			ch := c.waiting[res.ID]
			delete(c.waiting, res.ID)
			c.mu.Unlock()
			if ch != nil {
				ch <- res
			}
		}
	default:
		http.NotFound(w, r)
	}
}

// seq counts the boots whose helper has called in.
func (c *ctl) seq() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bootSeq
}

// reset drops commands queued for a boot that ended.
func (c *ctl) reset() {
	for {
		select {
		case <-c.queue:
		default:
			c.mu.Lock()
			c.waiting = map[int]chan result{}
			c.mu.Unlock()
			return
		}
	}
}

// run runs a shell command in the guest. It fails when the guest does not answer within
// timeout (plus slack) or the board goes down.
func (c *ctl) run(v *vm, cmd string, timeout time.Duration) (result, error) {
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	ch := make(chan result, 1)
	c.waiting[id] = ch
	c.mu.Unlock()
	c.queue <- command{ID: id, Cmd: cmd, Timeout: int(timeout / time.Second)}
	deadline := time.After(timeout + time.Minute)
	for {
		select {
		case r := <-ch:
			return r, nil
		case <-deadline:
			return result{}, fmt.Errorf("guest did not answer %q within %v", cmd, timeout+time.Minute)
		case <-time.After(time.Second):
			if !v.running() {
				c.reset()
				return result{}, fmt.Errorf("the board went down while running %q", cmd)
			}
		}
	}
}
