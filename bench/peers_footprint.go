package main

import (
	"bufio"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
)

// footprintJob: what each agent adds to a device's root filesystem, for arm64 and armhf.
// A peer costs its Debian packages plus every dependency a minimal Debian (minbase: the
// Priority: required packages and what they pull in) does not already have; ota-agent is
// one static binary.
func (b *bench) footprintJob(t *peerTable, _ *peerWorld) {
	peers := []struct {
		agent, mode string
		pkgs        []string
	}{
		{"Mender", "mender-client", []string{"mender-client"}},
		{"SWUpdate", "swupdate", []string{"swupdate"}},
		{"RAUC", "rauc + rauc-service", []string{"rauc", "rauc-service"}},
	}
	for _, arch := range []struct{ deb, goarch, goarm string }{{"arm64", "arm64", ""}, {"armhf", "arm", "7"}} {
		idx := debIndex(arch.deb)
		base := idx.closure(idx.required(), nil)
		vals := []peerVal{{"ota-agent", "static binary", float64(fileSize(b.crossBuild(arch.goarch, arch.goarm, "peers-ota-agent-"+arch.goarch, "-s -w")))}}
		var extra []string
		for _, p := range peers {
			var kib int64
			var added []string
			for name := range idx.closure(p.pkgs, base) {
				kib += idx.pkgs[name].kib
				added = append(added, name)
			}
			sort.Strings(added)
			vals = append(vals, peerVal{p.agent, fmt.Sprintf("%s, %d packages", p.mode, len(added)), float64(kib) * 1024})
			extra = append(extra, fmt.Sprintf("%s on %s adds %s", p.agent, arch.deb, strings.Join(added, ", ")))
		}
		t.figures("installed size on a minimal Debian 12 "+arch.deb+" (dependencies included)", vals, func(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }, nil)
		t.notes = append(t.notes, "Footprint: "+strings.Join(extra, "; ")+".")
	}
}

type debPkg struct {
	kib      int64
	required bool
	deps     [][]string // each a list of alternatives
}

type debIdx struct {
	pkgs     map[string]debPkg
	provides map[string]string // virtual → a package that provides it
}

// debIndex reads apt's package lists for arch (bench/peers.sh adds the architecture and
// runs apt-get update).
func debIndex(arch string) *debIdx {
	files := strings.Fields(sh(fmt.Sprintf("apt-get indextargets --format '$(FILENAME)' 'Identifier: Packages' 'Architecture: %s'", arch)))
	if len(files) == 0 {
		fail("no package lists for %s: dpkg --add-architecture %s && apt-get update (bench/peers.sh does)", arch, arch)
	}
	idx := &debIdx{pkgs: map[string]debPkg{}, provides: map[string]string{}}
	for _, f := range files {
		cmd := exec.Command("/usr/lib/apt/apt-helper", "cat-file", f)
		out, err := cmd.StdoutPipe()
		must(err)
		must(cmd.Start())
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var name string
		var p debPkg
		flush := func() {
			if name != "" {
				idx.pkgs[name] = p
			}
			name, p = "", debPkg{}
		}
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ": ")
			switch k {
			case "":
				flush()
			case "Package":
				name = v
			case "Installed-Size":
				p.kib, _ = strconv.ParseInt(v, 10, 64)
			case "Priority":
				p.required = p.required || v == "required"
			case "Essential":
				p.required = p.required || v == "yes"
			case "Depends", "Pre-Depends":
				p.deps = append(p.deps, parseDeps(v)...)
			case "Provides":
				for _, alt := range parseDeps(v) {
					idx.provides[alt[0]] = name
				}
			}
		}
		flush()
		must(cmd.Wait())
	}
	return idx
}

func parseDeps(v string) [][]string {
	var out [][]string
	for _, d := range strings.Split(v, ",") {
		var alts []string
		for _, a := range strings.Split(d, "|") {
			a = strings.TrimSpace(a)
			if i := strings.IndexAny(a, " (:"); i >= 0 {
				a = a[:i]
			}
			if a != "" {
				alts = append(alts, a)
			}
		}
		if len(alts) > 0 {
			out = append(out, alts)
		}
	}
	return out
}

func (idx *debIdx) required() []string {
	var out []string
	for n, p := range idx.pkgs {
		if p.required {
			out = append(out, n)
		}
	}
	return out
}

// closure is what installing roots adds to a system that has the packages in have: roots
// and their dependencies (the first alternative, unless another is there already).
func (idx *debIdx) closure(roots []string, have map[string]bool) map[string]bool {
	seen, added := map[string]bool{}, map[string]bool{}
	for n := range have {
		seen[n] = true
	}
	queue := append([]string(nil), roots...)
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		if _, ok := idx.pkgs[n]; !ok {
			n = idx.provides[n]
		}
		if n == "" || seen[n] {
			continue
		}
		seen[n], added[n] = true, true
		for _, alts := range idx.pkgs[n].deps {
			if !slicesAny(alts, seen) {
				queue = append(queue, alts[0])
			}
		}
	}
	return added
}

func slicesAny(names []string, seen map[string]bool) bool {
	for _, n := range names {
		if seen[n] {
			return true
		}
	}
	return false
}
