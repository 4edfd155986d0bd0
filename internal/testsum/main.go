// Command testsum reads `go test -json` on stdin and prints what `go test` prints without -v
// (a line per package, the output of failing tests), then every skipped test with its
// reason, so a skip is never silent in `make test`, and the slowest top-level tests (what
// to look at when the suite grows). Its exit status is 1 when a test or a package failed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	out := map[string][]string{} // package/test → its output lines
	var skips []string
	var slow []event
	failed := false
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			fmt.Println(sc.Text()) // not JSON: a build error, say
			continue
		}
		key := e.Package + "\x00" + e.Test
		switch e.Action {
		case "output":
			out[key] = append(out[key], e.Output)
		case "skip":
			if e.Test != "" {
				skips = append(skips, fmt.Sprintf("%s %s: %s", e.Package, e.Test, reason(out[key])))
			}
			delete(out, key)
		case "build-fail":
			failed = true
		case "fail":
			failed = true
			if e.Test != "" {
				fmt.Print(strings.Join(out[key], ""))
			} else {
				fmt.Print(strings.Join(packageLines(out[key]), ""))
				fmt.Printf("FAIL\t%s\t%.3fs\n", e.Package, e.Elapsed)
			}
			delete(out, key)
		case "pass":
			if e.Test == "" {
				fmt.Printf("ok  \t%s\t%.3fs\n", e.Package, e.Elapsed)
			} else if !strings.Contains(e.Test, "/") {
				slow = append(slow, e)
			}
			delete(out, key)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Println("testsum:", err)
		failed = true
	}
	sort.Slice(slow, func(i, j int) bool { return slow[i].Elapsed > slow[j].Elapsed })
	if len(slow) > 0 {
		fmt.Println("slowest tests:")
		for _, e := range slow[:min(len(slow), 8)] {
			fmt.Printf("  %6.1fs %s %s\n", e.Elapsed, strings.TrimPrefix(e.Package, "github.com/ota-agent/ota-agent/"), e.Test)
		}
	}
	sort.Strings(skips)
	if len(skips) > 0 {
		fmt.Printf("SKIPPED %d test(s):\n", len(skips))
		for _, s := range skips {
			fmt.Println("  " + s)
		}
	}
	if failed {
		os.Exit(1)
	}
}

// reason is the skip message: the test's output without the framework's own lines.
func reason(lines []string) string {
	var r []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		if _, msg, ok := strings.Cut(t, ": "); ok && strings.Contains(t[:len(t)-len(msg)], ".go:") {
			t = msg // drop the file:line prefix
		}
		r = append(r, t)
	}
	if len(r) == 0 {
		return "(no reason given)"
	}
	return strings.Join(r, " ")
}

// packageLines is a failed package's own output less the "FAIL" lines go test adds.
func packageLines(lines []string) []string {
	var r []string
	for _, l := range lines {
		if t := strings.TrimSpace(l); t == "FAIL" || t == "PASS" || strings.HasPrefix(t, "FAIL\t") || strings.HasPrefix(t, "ok  \t") {
			continue
		}
		r = append(r, l)
	}
	return r
}
