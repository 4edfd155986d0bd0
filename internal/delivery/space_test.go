package delivery

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ota-agent/ota-agent/internal/fault"
)

// A full disk is named as the device's own trouble, with the free space; a network error
// stays the network's.
func TestLocalErrorNamesTheDisk(t *testing.T) {
	err := netError("download x", &os.PathError{Op: "write", Path: filepath.Join(t.TempDir(), "x"), Err: syscall.ENOSPC})
	if errors.Is(err, fault.ErrUnavailable) || !strings.Contains(err.Error(), "filesystem is full (") || !strings.Contains(err.Error(), "free now)") {
		t.Errorf("ENOSPC: %v", err)
	}
	if err := netError("get", errors.New("connection reset")); !errors.Is(err, fault.ErrUnavailable) {
		t.Errorf("network error: %v", err)
	}
}
