package leakcheck

import (
	"strings"
	"testing"
)

// A goroutine of this module that is still running is reported, with its stack; once it
// ends it is not.
func TestLeaked(t *testing.T) {
	stop, started := make(chan struct{}), make(chan struct{})
	go parked(stop, started)
	<-started
	found := false
	for _, g := range Leaked() {
		found = found || strings.Contains(g, "leakcheck.parked")
	}
	if !found {
		t.Fatal("a running goroutine of the module was not reported")
	}
	close(stop)
}

func parked(stop, started chan struct{}) {
	close(started)
	<-stop
}
