package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/ota-agent/ota-agent/internal/atomicfile"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/spf13/pflag"
)

// delta writes NEW.from-<h16 of OLD>.zst beside NEW: with the zstd command when it is
// installed (-19 --long=27 --patch-from: the smallest patches), else the Go encoder.
func deltaFlags(fs *pflag.FlagSet) func(*pflag.FlagSet, io.Writer) error {
	goEnc := fs.Bool("go", false, "use the Go encoder even when the zstd command is installed")
	blocks := fs.Bool("blocks", false, "only a block patch (devices apply it with bounded memory): for images (without --blocks, files over 4 MiB get both)")
	return func(fs *pflag.FlagSet, stdout io.Writer) error {
		if fs.NArg() != 2 {
			return usageErr("delta", "want OLD NEW (the installed file and the new release)")
		}
		for _, p := range fs.Args() {
			if err := regular(p); err != nil {
				return fmt.Errorf("delta: %w", err)
			}
		}
		if *blocks {
			return blockDelta(fs.Arg(0), fs.Arg(1), stdout)
		}
		ofi, err := os.Stat(fs.Arg(0))
		if err != nil {
			return err
		}
		nfi, err := os.Stat(fs.Arg(1))
		if err != nil {
			return err
		}
		if max(ofi.Size(), nfi.Size()) <= packaging.MaxPatchWindow {
			if err := wholeDelta(fs.Arg(0), fs.Arg(1), *goEnc, stdout); err != nil {
				return err
			}
		}
		// Devices take a block patch for an installed file over their delta.max_source
		// (default packaging.BlockPatchAbove): it is published for them too.
		if ofi.Size() > packaging.BlockPatchAbove {
			return blockDelta(fs.Arg(0), fs.Arg(1), stdout)
		}
		return nil
	}
}

// regular refuses what is not a regular file (a FIFO or a device would hang or never end).
func regular(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
	}
	return nil
}

// wholeDelta writes NEW.from-<h16 of OLD>.zst, a whole-file patch.
func wholeDelta(oldPath, newPath string, goEnc bool, stdout io.Writer) error {
	old, err := os.ReadFile(oldPath)
	if err != nil {
		return err
	}
	nw, err := os.ReadFile(newPath)
	if err != nil {
		return err
	}
	if int64(len(old)) > packaging.MaxPatchWindow || int64(len(nw)) > packaging.MaxPatchWindow {
		return fmt.Errorf("delta: files over %d bytes take a block patch (--blocks)", packaging.MaxPatchWindow)
	}
	sum := sha256.Sum256(old)
	out := newPath + packaging.PatchSuffix(hex.EncodeToString(sum[:]))
	how := "zstd -19 --long=27 --patch-from"
	if z, lerr := exec.LookPath("zstd"); lerr == nil && !goEnc {
		if b, err := exec.Command(z, "-q", "-f", "-19", "--long=27", "--patch-from="+oldPath, newPath, "-o", out).CombinedOutput(); err != nil {
			return fmt.Errorf("delta: zstd: %v: %s", err, b)
		}
	} else {
		how = "the Go encoder"
		patch, err := packaging.MakePatch(old, nw)
		if err != nil {
			return err
		}
		if err := atomicfile.Write(out, patch, 0o644); err != nil {
			return err
		}
	}
	var check []byte
	if check, err = os.ReadFile(out); err == nil {
		_, err = packaging.ApplyPatch(io.Discard, bytes.NewReader(check), old, int64(len(nw)))
	}
	if err != nil {
		os.Remove(out)
		return fmt.Errorf("delta: the patch does not apply: %v", err)
	}
	fmt.Fprintf(stdout, "wrote %s: %d bytes for %d (%.1f%%), %s\n", out, len(check), len(nw), 100*float64(len(check))/float64(max(len(nw), 1)), how)
	return nil
}

// indexFlags: index writes NEW.chunks beside NEW.
func indexFlags(*pflag.FlagSet) func(*pflag.FlagSet, io.Writer) error {
	return func(fs *pflag.FlagSet, stdout io.Writer) error {
		if fs.NArg() != 1 {
			return usageErr("index", "want NEW (the file to index)")
		}
		return index(fs.Arg(0), stdout)
	}
}

func index(path string, stdout io.Writer) error {
	if err := regular(path); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	idx, err := packaging.ChunkFile(f)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(idx) // compact: thousands of chunks for an image
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path+packaging.ChunkSuffix, raw, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %d chunks of %d bytes\n", path+packaging.ChunkSuffix, len(idx.Chunks), idx.Size)
	return nil
}

// blockDelta writes NEW.from-<h16 of OLD>.blocks beside NEW and checks that it applies.
func blockDelta(oldPath, newPath string, stdout io.Writer) error {
	old, err := os.Open(oldPath)
	if err != nil {
		return err
	}
	defer old.Close()
	nw, err := os.Open(newPath)
	if err != nil {
		return err
	}
	defer nw.Close()
	ofi, _ := old.Stat()
	nfi, _ := nw.Stat()
	d, err := packaging.DigestReader(old)
	if err != nil {
		return err
	}
	out := newPath + strings.TrimSuffix(packaging.PatchSuffix(d.SHA256), ".zst") + packaging.BlockPatchSuffix
	err = atomicfile.WriteFunc(out, 0o644, func(w io.Writer) error {
		return packaging.MakeBlockPatch(w, old, nw, ofi.Size(), nfi.Size())
	})
	if err != nil {
		return err
	}
	p, err := os.Open(out)
	if err != nil {
		return err
	}
	defer p.Close()
	if _, err := packaging.ApplyBlockPatch(io.Discard, p, old, ofi.Size(), nfi.Size()); err != nil {
		os.Remove(out)
		return fmt.Errorf("delta: the block patch does not apply: %v", err)
	}
	pfi, _ := p.Stat()
	fmt.Fprintf(stdout, "wrote %s: %d bytes for %d (%.2f%%), 2 MiB blocks\n", out, pfi.Size(), nfi.Size(), 100*float64(pfi.Size())/float64(max(nfi.Size(), 1)))
	return nil
}
