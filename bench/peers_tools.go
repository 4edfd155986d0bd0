package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ota-agent/ota-agent/internal/strace"
)

// peerRun is what one agent cost for one job.
type peerRun struct {
	wall, cpu time.Duration
	rssKB     int64 // the largest process's peak (GNU time %M)
	net       int64 // body bytes the server sent
}

// runner runs one job's commands either timed (GNU time: wall, user+sys of the whole
// process tree, the largest process's peak RSS) or under strace, and sums them.
type runner struct {
	b      *bench
	traced bool
	r      peerRun
	ev     []strace.Event
}

func (x *runner) cmd(env []string, name string, args ...string) {
	tmp := filepath.Join(x.b.dir, "peer-cmd.out")
	var cmd *exec.Cmd
	if x.traced {
		cmd = exec.Command("strace", append([]string{"-f", "-y", "-qq", "-o", tmp, "-e", strace.Calls, name}, args...)...)
	} else {
		cmd = exec.Command("/usr/bin/time", append([]string{"-f", "%e %U %S %M", "-o", tmp, name}, args...)...)
	}
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		fail("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(string(out), 3000))
	}
	if x.traced {
		ev, err := strace.Parse(tmp)
		must(err)
		x.ev = append(x.ev, ev...)
		return
	}
	raw, err := os.ReadFile(tmp)
	must(err)
	f := strings.Fields(string(raw))
	if len(f) < 4 {
		fail("GNU time printed %q", raw)
	}
	sec := func(s string) time.Duration {
		v, _ := strconv.ParseFloat(s, 64)
		return time.Duration(v * float64(time.Second))
	}
	kb, _ := strconv.ParseInt(f[3], 10, 64)
	x.r.wall += sec(f[0])
	x.r.cpu += sec(f[1]) + sec(f[2])
	x.r.rssKB = max(x.r.rssKB, kb)
}

// judge sets durable from the strace pass: every file must have been fsync'd before a
// reader could see it.
func (x *runner) judge(files []string, switchPath string) string {
	all, dirs := true, true
	for _, f := range files {
		v := strace.Judge(x.ev, f, switchPath)
		if !v.Durable {
			return "no: " + v.How
		}
		all, dirs = all && v.Durable, dirs && v.DirSync
	}
	if !dirs {
		return "yes (the directory entry not fsync'd)"
	}
	return "yes"
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// fileServer serves the peers' artifacts on loopback, counts the body bytes it sends and
// can stall a transfer at a byte offset (the resume job's cut).
type fileServer struct {
	base    string
	sent    atomic.Int64
	stallAt atomic.Int64 // 0: off; else stop sending once this many body bytes went out in all
	stalled chan struct{}
	once    sync.Once
	l       net.Listener
}

func (b *bench) serveFiles(dir string) *fileServer {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	fs := &fileServer{base: "http://" + l.Addr().String(), stalled: make(chan struct{}), l: l}
	files := http.FileServer(http.Dir(dir))
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		files.ServeHTTP(&stallWriter{ResponseWriter: w, fs: fs, r: r}, r)
	}))
	return fs
}

// arm re-arms the stall (0: off).
func (fs *fileServer) arm(at int64) {
	fs.stallAt.Store(at)
	fs.stalled, fs.once = make(chan struct{}), sync.Once{}
}

type stallWriter struct {
	http.ResponseWriter
	fs *fileServer
	r  *http.Request
}

func (w *stallWriter) Write(p []byte) (int, error) {
	fs := w.fs
	if at := fs.stallAt.Load(); at > 0 {
		if room := at - fs.sent.Load(); room < int64(len(p)) {
			n, _ := w.ResponseWriter.Write(p[:max(room, 0)])
			fs.sent.Add(int64(n))
			w.ResponseWriter.(http.Flusher).Flush()
			fs.once.Do(func() { close(fs.stalled) })
			<-w.r.Context().Done() // the client is killed; its connection closes
			return n, w.r.Context().Err()
		}
	}
	n, err := w.ResponseWriter.Write(p)
	fs.sent.Add(int64(n))
	return n, err
}

// killTree SIGKILLs a process group (an agent and whatever it started).
func killTree(cmd *exec.Cmd) {
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
}

// startGroup starts a command in its own process group.
func startGroup(env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	must(cmd.Start())
	return cmd
}

// treeRSS is the summed VmRSS (KiB) of pid and its descendants.
func treeRSS(pid int) int64 {
	var kb int64
	for _, p := range treePIDs(pid) {
		kb += procField(p, "VmRSS:")
	}
	return kb
}

// treePIDs is pid and its live descendants.
func treePIDs(pid int) []int {
	kids := map[int][]int{}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		n, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n))
		if err != nil {
			continue
		}
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
		pp, _ := strconv.Atoi(f[1])
		kids[pp] = append(kids[pp], n)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, kids[out[i]]...)
	}
	return out
}

func procField(pid int, key string) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, key) {
			n, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return n
		}
	}
	return 0
}

func sh(script string) string {
	out, err := exec.Command("sh", "-c", script).CombinedOutput()
	if err != nil {
		fail("%s: %v\n%s", script, err, out)
	}
	return strings.TrimSpace(string(out))
}
