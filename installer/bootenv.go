package installer

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/ota-agent/ota-agent/internal/atomicfile"
)

// Boot environment variables shared with the bootloader script (docs/bootloader.md).
const (
	VarSlot      = "ota_slot"          // slot to boot: a | b
	VarUpgrade   = "upgrade_available" // 1 while a new slot is on trial
	VarBootcount = "bootcount"         // counted up by the bootloader while on trial
)

// BootEnv reads and writes the bootloader's environment; Write sets every variable in one
// atomic write of the environment.
type BootEnv interface {
	Read() (map[string]string, error)
	Write(vars map[string]string) error
	String() string
}

// GrubEnv is a GRUB environment block edited with grub-editenv, and its second copy
// (File + "-redund"). grub-editenv truncates a block before it writes it, so a power cut can
// leave it empty: the second copy is written first, and GRUB (dist/bootloader/grub.cfg) and
// Read use it when the first is not a whole block.
type GrubEnv struct{ File string }

func (g GrubEnv) String() string { return "grubenv " + g.File }

// Redund is the second copy's path.
func (g GrubEnv) Redund() string { return g.File + "-redund" }

func (g GrubEnv) Read() (map[string]string, error) {
	out, err := run("grub-editenv", g.File, "list")
	if err != nil {
		if alt, err2 := run("grub-editenv", g.Redund(), "list"); err2 == nil {
			return parseVars(alt), nil
		}
		return nil, err
	}
	return parseVars(out), nil
}

// Write sets the variables in both copies, the second one first, each durable before the
// next: the caller records "the bootloader was told" right after. Every variable the
// environment holds (bootlimit, say) is written to both, and a copy that is not a whole
// block is made again.
func (g GrubEnv) Write(vars map[string]string) error {
	all, err := g.Read()
	if err != nil {
		all = map[string]string{}
	}
	for k, v := range vars {
		all[k] = v
	}
	for _, f := range []string{g.Redund(), g.File} {
		if _, err := os.Stat(f); err == nil {
			if _, err := run("grub-editenv", f, "list"); err != nil {
				if _, err := run("grub-editenv", f, "create"); err != nil {
					return err
				}
			}
		}
		if _, err := run("grub-editenv", append([]string{f, "set"}, assignments(all)...)...); err != nil {
			return err
		}
		if err := syncStorage(f); err != nil {
			return err
		}
	}
	return nil
}

// UBootEnv is a U-Boot environment accessed with libubootenv's fw_printenv / fw_setenv.
type UBootEnv struct{ Config string }

func (u UBootEnv) String() string { return "U-Boot environment (" + u.Config + ")" }

func (u UBootEnv) Read() (map[string]string, error) {
	out, err := run("fw_printenv", "-c", u.Config)
	if err != nil {
		return nil, err
	}
	return parseVars(out), nil
}

// Write sets all variables with one `fw_setenv -s script`: one write of the environment
// (both copies in turn when fw_env.config names a redundant one).
func (u UBootEnv) Write(vars map[string]string) error {
	f, err := os.CreateTemp("", "ota-fw-setenv-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	f.WriteString(strings.Join(assignments(vars), "\n") + "\n")
	f.Close()
	if _, err = run("fw_setenv", "-c", u.Config, "-s", f.Name()); err != nil {
		return err
	}
	// fw_setenv may return with the new environment still in the page cache (a file on a
	// FAT partition is the common case): a power cut would then lose a write the agent has
	// already recorded, and the next boot would look like a bootloader fallback.
	paths, err := envStorage(u.Config)
	if err != nil {
		return err
	}
	for _, p := range paths {
		if err := syncStorage(p); err != nil {
			return err
		}
	}
	return nil
}

// envStorage lists the devices or files an fw_env.config names (first field of each line).
func envStorage(config string) ([]string, error) {
	raw, err := os.ReadFile(config)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && !strings.HasPrefix(f[0], "#") {
			out = append(out, f[0])
		}
	}
	return out, nil
}

// syncStorage flushes an environment's device or file, and a file's directory entry.
func syncStorage(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	st, err := f.Stat()
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	if err != nil && st != nil && !st.Mode().IsRegular() && errors.Is(err, syscall.EINVAL) {
		err = nil // a character device without a cache (MTD flash): its writes are already out
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if st.Mode().IsRegular() {
		dir, err := os.OpenRoot(filepath.Dir(path))
		if err != nil {
			return fmt.Errorf("sync %s: %w", filepath.Dir(path), err)
		}
		defer dir.Close()
		return atomicfile.SyncDir(dir, ".")
	}
	return nil
}

func assignments(vars map[string]string) []string {
	var out []string
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func parseVars(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && k != "" {
			m[k] = v
		}
	}
	return m
}

func run(name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	// fw_printenv warns on stderr about a default environment: that is not a usable env.
	if strings.Contains(stderr.String(), "Cannot read environment") {
		return "", fmt.Errorf("%s: %s (provision the environment first)", name, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
