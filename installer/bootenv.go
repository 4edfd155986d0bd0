package installer

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
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

// GrubEnv is a GRUB environment block edited with grub-editenv.
type GrubEnv struct{ File string }

func (g GrubEnv) String() string { return "grubenv " + g.File }

func (g GrubEnv) Read() (map[string]string, error) {
	out, err := run("grub-editenv", g.File, "list")
	if err != nil {
		return nil, err
	}
	return parseVars(out), nil
}

func (g GrubEnv) Write(vars map[string]string) error {
	_, err := run("grub-editenv", append([]string{g.File, "set"}, assignments(vars)...)...)
	return err
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
	_, err = run("fw_setenv", "-c", u.Config, "-s", f.Name())
	return err
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
