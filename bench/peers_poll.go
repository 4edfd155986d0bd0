package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// pollJob: each agent's daemon polling a server that has nothing new, every second, for a
// window. Per poll: the bytes both ways and the daemon's CPU; at the end its resident memory.
// ota-agent asks the testserver (through a counting proxy); Mender and SWUpdate ask stand-ins
// of their servers (Mender's device API, hawkBit's DDI) that answer "nothing to do".
func (b *bench) pollJob(t *peerTable, w *peerWorld) {
	window := 60 * time.Second
	if b.quick {
		window = 12 * time.Second
	}
	var perBytes, perSent, perCPU, rss []peerVal
	for _, d := range []daemonUnderTest{b.oursDaemon(w), w.menderDaemon(), w.swupdateDaemon()} {
		bytes, sent, polls, cpu, kb := watchDaemon(d, window)
		perBytes = append(perBytes, peerVal{d.agent, d.mode, float64(bytes) / float64(polls)})
		perSent = append(perSent, peerVal{d.agent, d.mode, float64(sent) / float64(polls)})
		perCPU = append(perCPU, peerVal{d.agent, d.mode, cpu.Seconds() / float64(polls)})
		rss = append(rss, peerVal{d.agent, d.mode, float64(kb) / 1024})
		d.stop()
	}
	floor := b.pollFloor(window)
	na := map[string]string{"RAUC": "n/a: RAUC does not poll (its hawkBit client, rauc-hawkbit-updater, is not packaged in Debian 12)"}
	t.figures("nothing new: bytes on the wire per poll (both ways, HTTP/1.1, no TLS)", perBytes, func(v float64) string { return fmt.Sprintf("%.0f B", v) }, na)
	t.figures("nothing new: bytes the device sends per poll (its requests: the side the agent controls)", perSent, func(v float64) string { return fmt.Sprintf("%.0f B", v) }, na)
	t.figures("nothing new: daemon CPU per poll (user+sys)", perCPU, func(v float64) string { return fmt.Sprintf("%.2f ms", v*1000) }, na)
	t.figures("idle daemon resident memory (process tree)", rss, func(v float64) string { return fmt.Sprintf("%.1f MiB", v) }, na)
	t.notes = append(t.notes,
		"Poll bytes: ota-agent's request carries what docs/protocol.md asks (the facts as query parameters, one MD5 per installed app in If-None-Match: 33 B an app) and the 304 comes back with the CDN's headers (Via, X-Amz-Cf-Id, X-Amz-Cf-Pop, X-Cache: ~170 B, as CloudFront sends them); the stand-ins of Mender's and hawkBit's servers send Go's bare minimum. Against the real servers behind a CDN the answers grow the same way; the request side is what the agent controls.",
		fmt.Sprintf("Poll CPU: ota-agent's unchanged check used to open agent.db 20 times and commit 5 write transactions (10 fdatasyncs); a check like the last recorded one now commits nothing (its record goes to runtime_dir, tmpfs on a device, and agent.db takes it hourly: no fsync on such a poll, TestQuietPollsSyncNothing), and while agent.db and `current` keep their identity the daemon re-sends the last full check's request without opening agent.db (checklog.Repeat), its runtime record rewritten in place (no file made and renamed a poll). The floor under it, measured in this run: a bare Go program polling the same way (net/http, keep-alive, a GET a second, nothing recorded) costs %.2f ms a poll here: the Go runtime's timer, netpoller and scheduler waking for each poll, which SWUpdate's suricatta (C, libcurl) does not pay. What ota-agent adds to that floor: two stat/readlink of the state directory (a change by another process ends the repeat), the runtime record, the stall timer and a log line. At a 6 h poll every poll is a full check (about 3 ms, four a day).", floor*1000),
	)
}

// pollFloor is the CPU a poll costs a bare Go program that polls the same way (net/http with
// keep-alive, one GET a second, a 304 back, nothing recorded): what any agent written in Go
// pays for its runtime's timer, netpoller and scheduler before doing anything of its own.
func (b *bench) pollFloor(window time.Duration) float64 {
	s := newStandIn("/floor", func(rw http.ResponseWriter, r *http.Request) { rw.WriteHeader(http.StatusNotModified) })
	exe, err := os.Executable()
	must(err)
	cmd := startGroup(nil, exe, "-poll-floor", s.base+"/floor")
	d := daemonUnderTest{agent: "a bare Go poller", pid: func() int { return cmd.Process.Pid },
		bytes: s.bytes.Load, sent: s.in.Load, polls: s.polls.Load, stop: func() { killTree(cmd); s.l.Close() }}
	_, _, polls, cpu, _ := watchDaemon(d, window)
	d.stop()
	return cpu.Seconds() / float64(polls)
}

// pollForever is the bare Go poller of pollFloor.
func pollForever(url string) {
	c := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	for {
		if resp, err := c.Get(url); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		time.Sleep(time.Second)
	}
}

// daemonUnderTest is one agent's daemon: its process group, and live counters of its
// traffic and of the polls the server has answered.
type daemonUnderTest struct {
	agent, mode string
	pid         func() int
	bytes       func() int64 // both ways
	sent        func() int64 // the device's requests
	polls       func() int64
	stop        func()
}

// watchDaemon waits for two polls (start-up done: keys made, authenticated), then measures
// a window of polls.
func watchDaemon(d daemonUnderTest, window time.Duration) (bytes, sent, polls int64, cpu time.Duration, rssKB int64) {
	deadline := time.Now().Add(2 * time.Minute)
	for d.polls() < 2 {
		if time.Now().After(deadline) {
			d.stop()
			fail("%s's daemon did not poll twice in 2 minutes", d.agent)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b0, s0, p0, c0 := d.bytes(), d.sent(), d.polls(), treeCPU(d.pid())
	time.Sleep(window)
	b1, s1, p1, c1 := d.bytes(), d.sent(), d.polls(), treeCPU(d.pid())
	if p1 == p0 {
		fail("%s's daemon stopped polling", d.agent)
	}
	return b1 - b0, s1 - s0, p1 - p0, c1 - c0, treeRSS(d.pid())
}

// treeCPU is the CPU time of pid's and its live descendants' threads, to the nanosecond
// (schedstat; /proc/pid/stat counts in 10 ms ticks, more than a poll of SWUpdate costs).
func treeCPU(pid int) time.Duration {
	var ns int64
	for _, p := range treePIDs(pid) {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", p))
		for _, t := range tasks {
			raw, err := os.ReadFile(t)
			if f := strings.Fields(string(raw)); err == nil && len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				ns += n
			}
		}
	}
	return time.Duration(ns)
}

func (b *bench) oursDaemon(w *peerWorld) daemonUnderTest {
	w.release(1)
	cfg, state := b.configWith(w.s, w.pub, "full", "peers-poll", "poll:\n  interval: 1s\n  jitter: 0s\n  align: false\n")
	b.agent("--config", cfg, "check", "--once")
	p := newProxy(strings.TrimPrefix(w.s.base, "http://"))
	cmd := startGroup(nil, filepath.Join(b.bin, "ota-agent"), "--config", cfg, "--server-url", "http://"+p.l.Addr().String()+"/package", "run")
	s304 := func() int64 { return w.s.srv.Stats().StatusCounts["304"] }
	n0 := s304()
	return daemonUnderTest{agent: "ota-agent", mode: "run",
		pid:   func() int { return cmd.Process.Pid },
		bytes: func() int64 { return p.up.Load() + p.down.Load() },
		sent:  p.up.Load,
		polls: func() int64 { return s304() - n0 },
		stop:  func() { killTree(cmd); p.l.Close(); os.RemoveAll(state) },
	}
}

// standIn is a loopback HTTP server that counts the bytes of its connections live and the
// requests whose path has a given suffix.
type standIn struct {
	base   string
	bytes  atomic.Int64 // both ways
	in     atomic.Int64 // what the device sent
	polls  atomic.Int64
	suffix string
	l      net.Listener
}

func newStandIn(suffix string, h http.HandlerFunc) *standIn {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	s := &standIn{base: "http://" + l.Addr().String(), suffix: suffix, l: l}
	go http.Serve(&countListener{l, &s.bytes, &s.in}, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, s.suffix) {
			s.polls.Add(1)
		}
		h(rw, r)
	}))
	return s
}

type countListener struct {
	net.Listener
	n, in *atomic.Int64 // both ways; read from the device
}

func (l *countListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countConn{c, l.n, l.in}, nil
}

type countConn struct {
	net.Conn
	n, in *atomic.Int64
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	c.in.Add(int64(n))
	return n, err
}

func (c *countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// menderDaemon runs `mender daemon` against a stand-in of Mender's device API: it accepts
// the device, takes its inventory and has no deployment for it (204).
func (w *peerWorld) menderDaemon() daemonUnderTest {
	s := newStandIn("/deployments/next", func(rw http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/authentication/auth_requests"):
			enc := base64.RawURLEncoding.EncodeToString
			rw.Write([]byte(enc([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + enc([]byte(`{"sub":"bench-device","mender.device":true}`)) + ".c2ln"))
		case strings.HasSuffix(r.URL.Path, "/deployments/next"):
			rw.WriteHeader(http.StatusNoContent)
		case strings.Contains(r.URL.Path, "/inventory/"):
		default:
			http.NotFound(rw, r)
		}
	})
	m := w.menderDevice("mender-daemon", fmt.Sprintf(`"ServerURL": %q,
 "UpdatePollIntervalSeconds": 1, "InventoryPollIntervalSeconds": 86400, "RetryPollIntervalSeconds": 1, "DBus": {"Enabled": false}`, s.base))
	// mender names the device by running this script (a fixed path in the Debian package).
	id := "/usr/share/mender/identity/mender-device-identity"
	if _, err := os.Stat(id); err != nil {
		must(os.MkdirAll(filepath.Dir(id), 0o755))
		must(os.WriteFile(id, []byte("#!/bin/sh\necho mac=02:00:00:00:be:01\n"), 0o755))
	}
	m.fresh()
	cmd := startGroup(nil, "mender", m.args("daemon")...)
	return daemonUnderTest{agent: "Mender", mode: "daemon",
		pid:   func() int { return cmd.Process.Pid },
		bytes: s.bytes.Load, sent: s.in.Load, polls: s.polls.Load,
		stop: func() { killTree(cmd); s.l.Close() },
	}
}

// swupdateDaemon runs swupdate with suricatta against a stand-in of hawkBit's DDI API that
// asks it to come back in a second and has no action for it.
func (w *peerWorld) swupdateDaemon() daemonUnderTest {
	const path = "/DEFAULT/controller/v1/bench-device"
	s := newStandIn(path, func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			http.NotFound(rw, r)
			return
		}
		rw.Header().Set("Content-Type", "application/hal+json")
		rw.Write([]byte(`{"config":{"polling":{"sleep":"00:00:01"}},"_links":{}}`))
	})
	cmd := startGroup(nil, "swupdate", "-H", "bench:1.0", "-k", filepath.Join(w.dir, "swu.crt"),
		"-u", "-t DEFAULT -u "+s.base+" -i bench-device -p 1")
	return daemonUnderTest{agent: "SWUpdate", mode: "suricatta",
		pid:   func() int { return cmd.Process.Pid },
		bytes: s.bytes.Load, sent: s.in.Load, polls: s.polls.Load,
		stop: func() { killTree(cmd); s.l.Close() },
	}
}
