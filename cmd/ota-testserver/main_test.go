package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSampleIsDeterministicAndSigned(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	for _, d := range []string{"a", "b"} {
		if err := run([]string{"sample", "--out", filepath.Join(dir, d), "--size", "1000", "--seed", "4"}, &out); err != nil {
			t.Fatal(err)
		}
	}
	x, _ := os.ReadFile(filepath.Join(dir, "a/blobs/os_armv8_1.1.0"))
	y, _ := os.ReadFile(filepath.Join(dir, "b/blobs/os_armv8_1.1.0"))
	if len(x) != 1000 || !bytes.Equal(x, y) {
		t.Fatal("the same seed wrote different bytes")
	}
	var cat struct {
		Rows []map[string]any `json:"rows"`
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "a/catalog.json"))
	json.Unmarshal(raw, &cat)
	if len(cat.Rows) != 9 {
		t.Fatalf("%d rows, want the nine of PROTOCOL 1.1", len(cat.Rows))
	}
}

func TestServeRefusesNonLoopback(t *testing.T) {
	var out bytes.Buffer
	err := run([]string{"serve", "--listen", "0.0.0.0:0", "--catalog", t.TempDir()}, &out)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("non-loopback listen: %v", err)
	}
	if err := run([]string{"serve"}, &out); err == nil || !strings.Contains(err.Error(), "--catalog") {
		t.Fatalf("missing --catalog: %v", err)
	}
	if err := run([]string{"bogus"}, &out); err == nil {
		t.Fatal("unknown command accepted")
	}
}
