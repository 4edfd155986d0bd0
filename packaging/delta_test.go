package packaging

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func shifted(old []byte) []byte {
	n := append([]byte("inserted in the middle "), old[len(old)/2:]...)
	return append(append(append([]byte(nil), old[:len(old)/2]...), n...), []byte("and at the end")...)
}

// A patch made here, and one made by the zstd command (--patch-from), both apply; a patch
// applied to the wrong old file, a truncated one and one that makes too much are refused.
func TestPatchRoundTrip(t *testing.T) {
	old := make([]byte, 300<<10)
	x := uint32(1)
	for i := range old {
		x = x*1664525 + 1013904223
		old[i] = byte(x >> 24)
	}
	nw := shifted(old)
	patch, err := MakePatch(old, nw)
	if err != nil {
		t.Fatal(err)
	}
	if len(patch) > len(nw)/20 {
		t.Fatalf("patch %d bytes for %d", len(patch), len(nw))
	}
	var out bytes.Buffer
	if _, err := ApplyPatch(&out, bytes.NewReader(patch), old, int64(len(nw))); err != nil || !bytes.Equal(out.Bytes(), nw) {
		t.Fatalf("apply: %v", err)
	}
	wrong := append([]byte(nil), old...)
	wrong[1000] ^= 1
	out.Reset()
	if _, err := ApplyPatch(&out, bytes.NewReader(patch), wrong, int64(len(nw))); err == nil && bytes.Equal(out.Bytes(), nw) {
		t.Fatal("a patch applied to another file gave the release")
	}
	for name, c := range map[string]struct {
		patch []byte
		want  int64
	}{"truncated": {patch[:len(patch)/2], int64(len(nw))}, "too much": {patch, int64(len(nw)) - 1}, "garbage": {[]byte("not zstd"), 10}} {
		if _, err := ApplyPatch(&bytes.Buffer{}, bytes.NewReader(c.patch), old, c.want); !errors.Is(err, ErrBadPatch) {
			t.Errorf("%s: %v", name, err)
		}
	}
	zstdCmd, err := exec.LookPath("zstd")
	if err != nil {
		t.Skip("SKIPPED the zstd command half: zstd is not installed (apt-get install zstd)")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "old"), old, 0o644)
	os.WriteFile(filepath.Join(dir, "new"), nw, 0o644)
	if out, err := exec.Command(zstdCmd, "-q", "-19", "--long=27", "--patch-from="+filepath.Join(dir, "old"), filepath.Join(dir, "new"), "-o", filepath.Join(dir, "p")).CombinedOutput(); err != nil {
		t.Fatalf("zstd: %v %s", err, out)
	}
	cli, _ := os.ReadFile(filepath.Join(dir, "p"))
	out.Reset()
	if _, err := ApplyPatch(&out, bytes.NewReader(cli), old, int64(len(nw))); err != nil || !bytes.Equal(out.Bytes(), nw) {
		t.Fatalf("apply the zstd command's patch: %v", err)
	}
}

// A block patch over several blocks, the old content shifted a little: it applies with one
// window at a time, is far smaller than the file, and a damaged one is refused.
func TestBlockPatch(t *testing.T) {
	old := make([]byte, 9<<20+12345)
	x := uint32(7)
	for i := range old {
		x = x*1664525 + 1013904223
		old[i] = byte(x >> 24)
	}
	nw := append(append(append([]byte(nil), old[:5<<20]...), []byte("a few bytes more")...), old[5<<20:]...)
	var p bytes.Buffer
	if err := MakeBlockPatch(&p, bytes.NewReader(old), bytes.NewReader(nw), int64(len(old)), int64(len(nw))); err != nil {
		t.Fatal(err)
	}
	if p.Len() > len(nw)/100 {
		t.Fatalf("block patch %d bytes for %d", p.Len(), len(nw))
	}
	var out bytes.Buffer
	if _, err := ApplyBlockPatch(&out, bytes.NewReader(p.Bytes()), bytes.NewReader(old), int64(len(old)), int64(len(nw))); err != nil || !bytes.Equal(out.Bytes(), nw) {
		t.Fatalf("apply: %v", err)
	}
	bad := append([]byte(nil), p.Bytes()...)
	bad[len(bad)-3] ^= 0xff
	if _, err := ApplyBlockPatch(io.Discard, bytes.NewReader(bad), bytes.NewReader(old), int64(len(old)), int64(len(nw))); err == nil {
		t.Fatal("a damaged block patch applied")
	}
	if _, err := ApplyBlockPatch(io.Discard, bytes.NewReader(p.Bytes()), bytes.NewReader(old), int64(len(old)), int64(len(nw))+1); !errors.Is(err, ErrBadPatch) {
		t.Fatalf("for another size: %v", err)
	}
}
