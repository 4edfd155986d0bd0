package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/ota-agent/ota-agent/internal/testenv"
)

// hashing: MB/s of sha256-simd vs crypto/sha256, native and (relative only) under QEMU.
func (b *bench) hashing() {
	targets := []struct{ goarch, goarm, qemu string }{{"amd64", "", ""}, {"arm64", "", "qemu-aarch64-static"}, {"arm", "7", "qemu-arm-static"}}
	for _, t := range targets {
		if t.qemu != "" {
			if _, err := exec.LookPath(t.qemu); err != nil {
				b.add(row{"SHA-256 on " + t.goarch, "skipped: " + t.qemu + " not installed", "", "", "", "skipped"})
				continue
			}
		}
		test := filepath.Join(b.dir, "packaging-"+t.goarch+".test")
		cmd := exec.Command("go", "test", "-c", "-o", test, "./packaging")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+t.goarch, "GOARM="+t.goarm)
		if out, err := cmd.CombinedOutput(); err != nil {
			fail("build %s test: %v %s", t.goarch, err, out)
		}
		args := []string{"-test.run", "^$", "-test.bench", "SHA256|Digester", "-test.benchtime", "300ms"}
		name := test
		if t.qemu != "" {
			args = append([]string{test}, args...)
			name = t.qemu
		}
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			fail("bench %s: %v %s", t.goarch, err, out)
		}
		mbs := parseBench(string(out))
		label := "native"
		if t.qemu != "" {
			label = "under QEMU, relative only"
		}
		std, simd := mbs["BenchmarkSHA256/crypto-sha256"], mbs["BenchmarkSHA256/sha256-simd"]
		b.add(row{fmt.Sprintf("SHA-256 MB/s on %s (%s)", t.goarch, label), fmt.Sprintf("sha256-simd %.0f MB/s; seam (MD5+SHA-256) %.0f MB/s", simd, mbs["BenchmarkDigester"]),
			fmt.Sprintf("crypto/sha256 %.0f MB/s", std), fmt.Sprintf("%.2f×", simd/std), "seam uses the faster", "see sha256_*.go"})
	}
}

func parseBench(out string) map[string]float64 {
	res := map[string]float64{}
	re := regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+\d+\s+[\d.]+ ns/op\s+([\d.]+) MB/s`)
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			v, _ := strconv.ParseFloat(m[3], 64)
			res[m[1]] = v
		}
	}
	return res
}

// sizes: stripped cross binaries, and what each dependency costs in the armv7 one.
func (b *bench) sizes() {
	var armStripped int64
	for _, t := range []struct{ goarch, goarm string }{{"arm", "7"}, {"arm64", ""}, {"amd64", ""}} {
		out := b.crossBuild(t.goarch, t.goarm, "size-"+t.goarch, "-s -w")
		fi, _ := os.Stat(out)
		if t.goarch == "arm" {
			armStripped = fi.Size()
		}
		target := "info"
		if t.goarch == "arm" {
			target = "≤ 9.0 MB"
		}
		b.add(row{"stripped ota-agent, linux/" + t.goarch + t.goarm, fmt.Sprintf("%d bytes (%.2f MB)", fi.Size(), float64(fi.Size())/1e6), "", "", target, map[bool]string{true: verdict(fi.Size() <= 9_000_000), false: "info"}[t.goarch == "arm"]})
	}
	// Symbol sizes by module in an unstripped armv7 build.
	full := b.crossBuild("arm", "7", "size-arm-syms", "")
	nm, err := exec.Command("go", "tool", "nm", "-size", full).Output()
	if err != nil {
		fail("nm: %v", err)
	}
	groups, features := map[string]int64{}, map[string]int64{}
	var all int64
	sc := bufio.NewScanner(bytes.NewReader(nm))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		if f[2] != "T" && f[2] != "t" {
			continue // code only: tables and strings are not attributed to a package by nm
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		all += n
		groups[depGroup(strings.Join(f[3:], " "))] += n
		if feat := featureGroup(strings.Join(f[3:], " ")); feat != "" {
			features[feat] += n
		}
	}
	var names []string
	for g := range groups {
		names = append(names, g)
	}
	sort.Slice(names, func(i, j int) bool { return groups[names[i]] > groups[names[j]] })
	var parts []string
	for _, g := range names {
		parts = append(parts, fmt.Sprintf("%s %.0f KB", g, float64(groups[g])/1e3))
	}
	b.add(row{"armv7 machine code by dependency (go tool nm, text symbols)", strings.Join(parts, "; "), fmt.Sprintf("all code %.0f KB of %.0f KB stripped", float64(all)/1e3, float64(armStripped)/1e3), "", "", "info"})
	parts = parts[:0]
	for _, f := range []string{"phased rollouts", "device reports"} {
		parts = append(parts, fmt.Sprintf("%s %.0f KB", f, float64(features[f])/1e3))
	}
	b.add(row{"armv7 machine code by feature (go tool nm, text symbols; the 9.0 MB budget's rollout and report work)", strings.Join(parts, "; "), "", "", "", "info"})
}

// featureGroup names the feature a symbol belongs to ("" for none counted apart).
func featureGroup(sym string) string {
	switch {
	case strings.Contains(sym, "internal/report."), strings.Contains(sym, "testserver/reports."):
		return "device reports"
	case strings.Contains(sym, "packaging/ramp."), strings.Contains(sym, "catalog.(*Catalog).Rollout"),
		strings.Contains(sym, "assemble.(*Assembly).Defer"), strings.Contains(sym, "assemble.(*Assembly).Probe"),
		strings.Contains(sym, "assemble.(*Assembly).AskFirst"), strings.Contains(sym, "assemble.(*Assembly).phase"),
		strings.Contains(sym, "assemble.(*Assembly).admitted"), strings.Contains(sym, "Class).Phase"), strings.Contains(sym, "validRollout"):
		return "phased rollouts"
	}
	return ""
}

// crossBuild builds ota-agent for linux/goarch as the Makefile does, into b.dir/name.
func (b *bench) crossBuild(goarch, goarm, name, ldflags string) string {
	out := filepath.Join(b.dir, name)
	cmd := exec.Command("go", "build", "-trimpath", "-tags", testenv.AgentTags, "-gcflags", testenv.AgentGCFlags, "-ldflags", ldflags, "-o", out, "./cmd/ota-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOARM="+goarm)
	if o, err := cmd.CombinedOutput(); err != nil {
		fail("build %s: %v %s", goarch, err, o)
	}
	return out
}

func depGroup(sym string) string {
	switch {
	case strings.Contains(sym, "spf13/"), strings.Contains(sym, "fsnotify"), strings.Contains(sym, "mapstructure"), strings.Contains(sym, "go-toml"),
		strings.Contains(sym, "sagikazarmark"), strings.Contains(sym, "sourcegraph"), strings.Contains(sym, "subosito"), strings.Contains(sym, "yaml"), strings.Contains(sym, "x/text"):
		return "viper+deps"
	case strings.Contains(sym, "bbolt"):
		return "bbolt"
	case strings.Contains(sym, "grab"):
		return "grab"
	case strings.Contains(sym, "go-systemd"):
		return "go-systemd"
	case strings.Contains(sym, "klauspost/compress"):
		return "zstd (patches)"
	case strings.Contains(sym, "sha256-simd"), strings.Contains(sym, "cpuid"):
		return "sha256-simd"
	case strings.Contains(sym, "ota-agent/"):
		return "ota-agent"
	}
	return "std+runtime"
}
