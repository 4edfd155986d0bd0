package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ota-agent/ota-agent/internal/testenv"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/testserver"
)

// deltas: per-file patches on real pairs (the arm64 agent built a few and many
// agent-changing commits apart, a synthetic insert in the middle): bytes on the wire with our
// patch (ota-release delta: the zstd command) and with the Go encoder, against the whole file
// and the yardstick `zstd -19 --long=27 --patch-from`; requests and the agent's peak RSS
// applying it.
func (b *bench) deltas() {
	zstd, err := exec.LookPath("zstd")
	if err != nil {
		b.add(row{"deltas", "skipped: the zstd command (the yardstick) is not installed", "", "", "", "info"})
		return
	}
	type pair struct{ name, old, new string }
	var pairs []pair
	// Commits that change the agent's code (a docs or bench commit builds the same binary).
	revs := strings.Fields(string(must1(exec.Command("git", "rev-list", "HEAD", "--", "cmd/ota-agent", "agent", "store", "installer", "packaging", "internal", "go.mod", "go.sum").Output())))
	head := ""
	for _, back := range []int{3, 40} {
		if back < len(revs) && !b.quick {
			if head == "" {
				head = b.agentAt("HEAD")
			}
			pairs = append(pairs, pair{fmt.Sprintf("ota-agent linux/arm64, %d agent-changing commits apart", back), b.agentAt(revs[back]), head})
		}
	}
	size := 8 << 20
	if b.quick {
		size = 1 << 20
	}
	old := filepath.Join(b.dir, "synthetic-old")
	writeRandom(old, int64(size), 99)
	ob, _ := os.ReadFile(old)
	nb := append(append(append([]byte(nil), ob[:size/2]...), make([]byte, 4096)...), ob[size/2:]...)
	must(os.WriteFile(filepath.Join(b.dir, "synthetic-new"), nb, 0o644))
	pairs = append(pairs, pair{fmt.Sprintf("synthetic %s, 4 KiB inserted in the middle", mib(int64(size))), old, filepath.Join(b.dir, "synthetic-new")})
	for _, p := range pairs {
		b.deltaRow(zstd, p.name, p.old, p.new, "patch")
	}
	if old, nw, ok := b.ext4Pair(); ok {
		b.deltaRow(zstd, "ext4 image 192 MiB (GOROOT/src), net/http's files changed, block patch", old, nw, "blocks")
		b.deltaRow(zstd, "the same image by chunk index", old, nw, "chunks")
	}
}

// ext4Pair makes two ext4 images (mkfs.ext4 -d, fixed UUID, hash seed and time) of a tree
// and of the same tree with one package's files changed: what an OS release looks like.
func (b *bench) ext4Pair() (string, string, bool) {
	mkfs, err := exec.LookPath("mkfs.ext4")
	src := filepath.Join(strings.TrimSpace(string(must1(exec.Command("go", "env", "GOROOT").Output()))), "src")
	if err != nil || b.quick {
		b.add(row{"delta: ext4 image", "skipped: mkfs.ext4 missing or -quick", "", "", "", "info"})
		return "", "", false
	}
	tree := filepath.Join(b.dir, "tree")
	if o, err := exec.Command("cp", "-a", src, tree).CombinedOutput(); err != nil {
		fail("cp: %v %s", err, o)
	}
	img := func(name string) string {
		out := filepath.Join(b.dir, name)
		cmd := exec.Command(mkfs, "-q", "-F", "-U", "6f1a3c58-2d1e-4b7a-9c3e-0d5b2f7a8e11", "-E", "hash_seed=6f1a3c58-2d1e-4b7a-9c3e-0d5b2f7a8e11", "-d", tree, out, "192M")
		cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME=1700000000")
		if o, err := cmd.CombinedOutput(); err != nil {
			fail("mkfs.ext4: %v %s", err, o)
		}
		return out
	}
	old := img("ext4-old.img")
	filepath.WalkDir(filepath.Join(tree, "net", "http"), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			raw, _ := os.ReadFile(p)
			os.WriteFile(p, append(raw, []byte("\n// changed in the new release\n")...), 0o644)
		}
		return nil
	})
	return old, img("ext4-new.img"), true
}

// agentAt builds the arm64 agent at rev (a worktree of this repository).
func (b *bench) agentAt(rev string) string {
	out := filepath.Join(b.dir, "agent-arm64-"+strings.ReplaceAll(rev, "~", "-"))
	wt := filepath.Join(b.dir, "wt-"+strings.ReplaceAll(rev, "~", "-"))
	if o, err := exec.Command("git", "worktree", "add", "--detach", "-f", wt, rev).CombinedOutput(); err != nil {
		fail("git worktree %s: %v %s", rev, err, o)
	}
	defer exec.Command("git", "worktree", "remove", "--force", wt).Run()
	cmd := exec.Command("go", "build", "-trimpath", "-tags", testenv.AgentTags, "-ldflags", "-s -w", "-o", out, "./cmd/ota-agent")
	cmd.Dir = wt
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if o, err := cmd.CombinedOutput(); err != nil {
		fail("build %s: %v %s", rev, err, o)
	}
	return out
}

func (b *bench) deltaRow(zstd, name, oldPath, newPath, kind string) {
	chunks := kind != "patch"
	dir := filepath.Join(b.dir, "delta-"+strings.NewReplacer(" ", "-", "/", "-", ",", "").Replace(name))
	must(os.MkdirAll(filepath.Join(dir, "blobs"), 0o755))
	ob, _ := os.ReadFile(oldPath)
	nb, _ := os.ReadFile(newPath)
	must(os.WriteFile(filepath.Join(dir, "blobs", "tool_1"), ob, 0o644))
	raw, _ := json.Marshal(map[string]any{"bucket": "bench-bucket", "rows": []map[string]any{{"app": "tool", "env": "prod", "version": "1", "file": "blobs/tool_1", "deviceAttr": map[string]bool{"gamer": true}}}})
	must(os.WriteFile(filepath.Join(dir, "catalog.json"), raw, 0o644))
	priv, pub, err := packaging.GenerateKey()
	must(err)
	cat, err := testserver.LoadCatalog(dir)
	must(err)
	must(cat.SignRows(priv))
	pubPath := filepath.Join(dir, "release.pub.pem")
	must(os.WriteFile(pubPath, pub, 0o644))
	s := b.serve(dir, testserver.Options{})
	defer s.stop()
	cfg, _ := b.config(s, pubPath, "metadata", filepath.Base(dir))
	b.agent("--config", cfg, "check", "--once")
	// The yardstick, then ours (ota-release delta: the zstd command) and the Go encoder's.
	yard := filepath.Join(dir, "yardstick.zst")
	if o, err := exec.Command(zstd, "-q", "-f", "-19", "--long=27", "--patch-from="+oldPath, newPath, "-o", yard).CombinedOutput(); err != nil {
		fail("zstd: %v %s", err, o)
	}
	yb := fileSize(yard)
	newFile := filepath.Join(dir, "blobs", "tool_2")
	must(os.WriteFile(newFile, nb, 0o644))
	sum := sha256.Sum256(ob)
	patch := newFile + packaging.PatchSuffix(hex.EncodeToString(sum[:]))
	var goPatch []byte
	if !chunks {
		goPatch, err = packaging.MakePatch(ob, nb)
		must(err)
	}
	tool, target := []string{"delta", oldPath, newFile}, "≤ 1.25× zstd (whole-file patch), ≤ 1.5× (block patch); RSS ≤ 24 MiB"
	switch kind {
	case "blocks":
		tool, target = []string{"delta", "--blocks", oldPath, newFile}, "≤ 2× zstd, RSS ≤ 24 MiB"
		patch = strings.TrimSuffix(patch, ".zst") + packaging.BlockPatchSuffix
	case "chunks":
		tool, target = []string{"index", newFile}, "info (the block patch is the image's delta)"
		patch = newFile + packaging.ChunkSuffix
	}
	if o, err := exec.Command(filepath.Join(b.bin, "ota-release"), tool...).CombinedOutput(); err != nil {
		fail("ota-release %v: %v %s", tool, err, o)
	}
	r := testserver.Row{App: "tool", Env: "prod", Version: "2", File: "blobs/tool_2", DeviceAttr: map[string]bool{"gamer": true}, Serial: 2}
	r, err = s.cat.SignRow(r, priv)
	must(err)
	must(s.srv.SetRow(r))
	s.srv.FlushEdge()
	st0 := s.srv.Stats()
	p := b.agent("--config", cfg, "check", "--once")
	st1 := s.srv.Stats()
	wire := st1.BytesByPath["/delta"] - st0.BytesByPath["/delta"] + st1.BytesByPath["/firmware"] - st0.BytesByPath["/firmware"]
	reqs := st1.RequestsByPath["/delta"] - st0.RequestsByPath["/delta"] + st1.RequestsByPath["/firmware"] - st0.RequestsByPath["/firmware"]
	ratio := float64(wire) / float64(yb)
	rss := p.maxKB<<10 <= 24<<20
	what, ok := fmt.Sprintf("patch %d, Go encoder %d", fileSize(patch), len(goPatch)), ratio <= 1.25 && rss
	if kind == "patch" && len(ob) > packaging.BlockPatchAbove { // what the device fetches by default
		what = fmt.Sprintf("block patch %d, the default over 4 MiB; whole-file patch %d", fileSize(strings.TrimSuffix(patch, ".zst")+packaging.BlockPatchSuffix), fileSize(patch))
		ok = ratio <= 1.5 && rss
	}
	switch kind {
	case "blocks":
		what, ok = fmt.Sprintf("block patch %d", fileSize(patch)), ratio <= 2 && rss
	case "chunks":
		what, ok = fmt.Sprintf("chunk index %d", fileSize(patch)), true
	}
	b.add(row{"delta: " + name,
		fmt.Sprintf("%d bytes on the wire in %d request(s) (%s; whole file %d, %.1f%%), agent peak RSS %s",
			wire, reqs, what, len(nb), 100*float64(wire)/float64(len(nb)), mib(p.maxKB<<10)),
		fmt.Sprintf("zstd --patch-from: %d bytes", yb), fmt.Sprintf("%.2f×", ratio), target, map[bool]string{true: verdict(ok), false: "info"}[kind != "chunks"]})
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	must(err)
	return fi.Size()
}

func must1[T any](v T, err error) T {
	must(err)
	return v
}
