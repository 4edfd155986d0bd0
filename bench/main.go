// Command bench measures ota-agent against baselines measured in the same run and prints one
// Markdown table (make bench; bench/results.md is the committed copy). Loopback only.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/internal/testenv"
)

// row is one line of the results table.
type row struct {
	what, figure, baseline, ratio, target, verdict string
}

type bench struct {
	dir   string // scratch
	bin   string // built binaries
	quick bool
	rows  []row
}

func main() {
	quick := flag.Bool("quick", false, "small sizes: check the bench itself, not the figures")
	out := flag.String("out", "bench/results.md", "where to write the table")
	peers := flag.Bool("peers", false, "ota-agent beside Mender, SWUpdate and RAUC (make bench-peers; writes bench/peers.md)")
	peerOnly := flag.String("peer-jobs", "", "with -peers: comma-separated jobs to run (apps,resume,footprint,poll,os)")
	only := flag.String("only", "", "comma-separated sections to run (install,nochange,memory,resume,hash,size,wire,netcap,fleet,rollout,delta)")
	floor := flag.String("poll-floor", "", "poll this URL every second, as a bare Go program would (the poll job's floor; runs until killed)")
	flag.Parse()
	if *floor != "" {
		pollForever(*floor)
	}
	dir, err := os.MkdirTemp("", "ota-bench-")
	must(err)
	defer os.RemoveAll(dir)
	b := &bench{dir: dir, bin: filepath.Join(dir, "bin"), quick: *quick}
	b.build()
	start := time.Now()
	if *peers {
		if *out == "bench/results.md" {
			*out = "bench/peers.md"
		}
		table := b.peers(*peerOnly).markdown(time.Since(start))
		fmt.Print(table)
		if !*quick && *peerOnly == "" {
			must(os.WriteFile(*out, []byte(table), 0o644))
		}
		return
	}
	sections := []struct {
		name string
		fn   func()
	}{
		{"install", b.install}, {"nochange", b.noChange}, {"memory", b.memory}, {"resume", b.resume},
		{"hash", b.hashing}, {"size", b.sizes}, {"wire", b.wire}, {"netcap", b.netcap}, {"fleet", b.fleet}, {"rollout", b.rollout}, {"delta", b.deltas},
	}
	for _, s := range sections {
		if *only != "" && !strings.Contains(","+*only+",", ","+s.name+",") {
			continue
		}
		t0 := time.Now()
		s.fn()
		fmt.Fprintf(os.Stderr, "bench: %s done in %v\n", s.name, time.Since(t0).Round(time.Second))
	}
	table := b.table(time.Since(start))
	fmt.Print(table)
	if *out != "" && !*quick && *only == "" {
		must(os.WriteFile(*out, []byte(table), 0o644))
	}
}

func (b *bench) add(r row) {
	b.rows = append(b.rows, r)
	fmt.Fprintf(os.Stderr, "bench: %s: %s (baseline %s, ratio %s)\n", r.what, r.figure, r.baseline, r.ratio)
}

func (b *bench) table(took time.Duration) string {
	var s strings.Builder
	host, _ := os.Hostname()
	cpu := "unknown CPU"
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(raw), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	fmt.Fprintf(&s, "# ota-agent bench results\n\n`make bench` on %s: %s, %d cores, %s, %s; took %v.\n", host, cpu, runtime.NumCPU(), runtime.Version(), time.Now().UTC().Format("2006-01-02"), took.Round(time.Second))
	fmt.Fprintf(&s, "Every ratio is against a baseline measured in the same run. QEMU figures are relative only.\n\n")
	s.WriteString("| measure | ota-agent | baseline | ratio | target | verdict |\n|---|---|---|---|---|---|\n")
	cell := strings.NewReplacer("|", `\|`).Replace // a shell pipe inside a cell
	for _, r := range b.rows {
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s | %s |\n", cell(r.what), cell(r.figure), cell(r.baseline), cell(r.ratio), cell(r.target), cell(r.verdict))
	}
	return s.String()
}

func (b *bench) build() {
	must(os.MkdirAll(b.bin, 0o755))
	for _, args := range [][]string{{"./cmd/ota-testserver", "./cmd/ota-release", "./bench/streamloop"}, {"-tags", testenv.AgentTags, "-gcflags", testenv.AgentGCFlags, "./cmd/ota-agent"}} {
		cmd := exec.Command("go", append([]string{"build", "-trimpath", "-ldflags", "-s -w", "-o", b.bin + "/"}, args...)...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fail("build: %v\n%s", err, out)
		}
	}
}

func must(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+f+"\n", a...)
	os.Exit(1)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
