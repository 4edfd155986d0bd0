// Package leakcheck fails a test binary whose tests leave goroutines of this module running:
// a package's TestMain calls Run. Goroutines of the standard library alone (an idle
// keep-alive connection, a timer) are not counted; anything started from this module's code
// must have ended once the tests return (it gets a few seconds to wind down).
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

const module = "github.com/ota-agent/ota-agent/"

// Run runs the tests, then checks for leaked goroutines; its result is the exit code.
func Run(m *testing.M) int {
	code := m.Run()
	if code != 0 {
		return code
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		leaked := Leaked()
		if len(leaked) == 0 {
			return code
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "FAIL: %d goroutines started by this module outlived the tests:\n\n%s\n", len(leaked), strings.Join(leaked, "\n\n"))
			return 1
		}
	}
}

// Leaked are the stacks of the goroutines running this module's code, but the caller's.
func Leaked() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 || !strings.Contains(g, module) || strings.Contains(g, "testing.(*M).") {
			continue // this goroutine (the first), the standard library's, the test main's
		}
		out = append(out, g)
	}
	return out
}
