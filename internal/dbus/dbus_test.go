package dbus

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startBus starts a real bus, dbus-daemon, on a socket in a temporary directory (the
// agent's other peer, systemd, is tested in the booted image).
func startBus(t *testing.T) string {
	t.Helper()
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Skip("SKIPPED: dbus-daemon is not installed (apt-get install dbus-daemon)")
	}
	sock := filepath.Join(t.TempDir(), "bus")
	cmd := exec.Command(daemon, "--session", "--nofork", "--nopidfile", "--address=unix:path="+sock, "--print-address=1")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		t.Fatalf("dbus-daemon did not start: %v", err)
	}
	return sock
}

// Calls to dbus-daemon and their answers: strings, arrays, booleans, variants, errors.
func TestAgainstDBusDaemon(t *testing.T) {
	sock := startBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, sock, true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	call := func(method string, args ...string) []any {
		t.Helper()
		v, err := c.Call(ctx, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", method, args...)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		return v
	}
	if id := call("GetId"); len(id) != 1 || len(id[0].(string)) != 32 {
		t.Fatalf("GetId = %v", id)
	}
	names := call("ListNames")
	if l, ok := names[0].([]any); !ok || len(l) < 2 || l[0] != "org.freedesktop.DBus" {
		t.Fatalf("ListNames = %#v", names)
	}
	if has := call("NameHasOwner", "org.freedesktop.DBus"); has[0] != true {
		t.Fatalf("NameHasOwner = %v", has)
	}
	if u := call("GetConnectionUnixUser", names[0].([]any)[1].(string)); len(u) != 1 {
		t.Fatalf("GetConnectionUnixUser = %v", u)
	}
	v, err := c.Call(ctx, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.Properties", "Get", "org.freedesktop.DBus", "Features")
	if err != nil || len(v) != 1 {
		t.Fatalf("Properties.Get Features = %v, %v", v, err)
	}
	if _, ok := v[0].([]any); !ok {
		t.Fatalf("Features is %#v, want an array (as a variant)", v[0])
	}
	_, err = c.Call(ctx, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "NoSuchMethod")
	var e *Error
	if !errors.As(err, &e) || e.Name != "org.freedesktop.DBus.Error.UnknownMethod" || !strings.Contains(e.Message, "NoSuchMethod") {
		t.Fatalf("unknown method: %v", err)
	}
}

// Hostile or truncated replies are errors, never panics.
func TestDecodeBodyBounds(t *testing.T) {
	for _, c := range []struct {
		body []byte
		sig  string
	}{
		{[]byte{5, 0, 0, 0, 'a'}, "s"},
		{[]byte{0xff, 0xff, 0xff, 0x7f}, "as"},
		{[]byte{1}, "v"},
		{[]byte{1, 'q'}, "(s"},
		{nil, "u"},
	} {
		if _, err := decodeBody(c.body, c.sig, binary.LittleEndian); err == nil {
			t.Errorf("%q %x: no error", c.sig, c.body)
		}
	}
	v, err := decodeBody([]byte{3, 0, 0, 0, 'a', 'b', 'c', 0, 7, 0, 0, 0}, "su", binary.LittleEndian)
	if err != nil || v[0] != "abc" || v[1] != uint32(7) {
		t.Fatalf("su = %v %v", v, err)
	}
}
